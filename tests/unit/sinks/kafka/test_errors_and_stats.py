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


def test_every_librdkafka_error_code_has_a_disposition() -> None:
    codes = {
        v for k, v in vars(KafkaError).items() if k.isupper() or (k.startswith("_") and isinstance(v, int))
    }
    codes = {c for c in codes if isinstance(c, int)}
    assert len(codes) > 100
    permanent = {c for c in codes if classify(KafkaError(c)) is Disposition.PERMANENT}
    timeouts = {c for c in codes if classify(KafkaError(c)) is Disposition.TIMEOUT}
    # What docs/reliability.md lists: record-level rejections and authorization; everything else is
    # retried (a record is never dropped for an error this table does not know).
    assert {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError._UNKNOWN_PARTITION,
    } <= permanent
    assert {KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT} == timeouts
    for retriable in (
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._QUEUE_FULL,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._PURGE_INFLIGHT,
    ):
        assert classify(KafkaError(retriable)) is Disposition.RETRY, retriable
