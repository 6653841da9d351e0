"""librdkafka's statistics as the sink's metrics (no broker: a statistics document of the tests')."""

from __future__ import annotations

from log_capturer.observability.metrics import Metrics
from log_capturer.sinks.kafka.stats import StatsTracker


def test_stats_update_connection_partitions_and_compression() -> None:
    m = Metrics()
    t = StatsTracker(m, "kafka", "zstd")
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
        reg.get_sample_value("kafka_connection_status", {"broker": "127.0.0.1:9092", "sink_name": "kafka"})
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
        reg.get_sample_value("kafka_connection_status", {"broker": "127.0.0.1:9092", "sink_name": "kafka"})
        == 0
    )
    assert t.all_down
