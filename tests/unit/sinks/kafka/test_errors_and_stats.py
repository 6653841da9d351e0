from __future__ import annotations

from confluent_kafka import KafkaError

from log_capturer.observability.metrics import Metrics
from log_capturer.sinks.kafka.errors import Disposition, classify, error_type
from log_capturer.sinks.kafka.stats import StatsTracker


def test_classification() -> None:
    assert classify(KafkaError(KafkaError._MSG_TIMED_OUT)) is Disposition.TIMEOUT
    assert classify(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)) is Disposition.PERMANENT
    assert classify(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)) is Disposition.PERMANENT
    assert classify(KafkaError(KafkaError.NOT_ENOUGH_REPLICAS)) is Disposition.RETRY
    assert classify(KafkaError(KafkaError._TRANSPORT)) is Disposition.RETRY
    assert classify(KafkaError(KafkaError._PURGE_QUEUE)) is Disposition.RETRY
    assert error_type(KafkaError(KafkaError._MSG_TIMED_OUT)) == "msg_timed_out"


def test_stats_update_connection_partitions_and_compression() -> None:
    m = Metrics()
    t = StatsTracker(m, "kafka_sink", "zstd")
    stats = {
        "brokers": {"b/1": {"nodename": "127.0.0.1:9092", "nodeid": 1, "state": "UP"}},
        "topics": {
            "logs": {
                "batchsize": {"avg": 1000},
                "batchcnt": {"avg": 50},
                "partitions": {"0": {"txmsgs": 10}, "-1": {"txmsgs": 0}},
            }
        },
    }
    t.update(stats, {"logs": 100.0})
    reg = m.registry
    assert (
        reg.get_sample_value(
            "kafka_connection_status", {"broker": "127.0.0.1:9092", "sink_name": "kafka_sink"}
        )
        == 1
    )
    assert reg.get_sample_value("kafka_partition_messages_total", {"topic": "logs", "partition": "0"}) == 10
    assert (
        reg.get_sample_value("kafka_compression_ratio", {"topic": "logs", "compression_type": "zstd"}) == 5.0
    )
    stats["topics"]["logs"]["partitions"]["0"]["txmsgs"] = 25  # type: ignore[index]
    stats["brokers"] = {"b": {"nodename": "127.0.0.1:9092", "nodeid": -1, "state": "INIT"}}
    t.update(stats, {"logs": 100.0})
    assert reg.get_sample_value("kafka_partition_messages_total", {"topic": "logs", "partition": "0"}) == 25
    assert (
        reg.get_sample_value(
            "kafka_connection_status", {"broker": "127.0.0.1:9092", "sink_name": "kafka_sink"}
        )
        == 0
    )
    assert t.all_down
