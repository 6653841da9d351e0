"""The Kafka source: a consumer group member that reads log topics into the delivery engine."""
