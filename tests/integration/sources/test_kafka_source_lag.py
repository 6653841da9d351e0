"""The Kafka source's lag of partitions it was assigned and has not received a record from, against
the test session's real broker: a real consumer is assigned the partitions and never polled for
records, and the source measures their lag the way ``kafka-consumer-groups`` reports it (from the
group's committed offset; with none, from where ``auto_offset_reset`` starts)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from log_capturer.devtools.kafka_local import free_port
from log_capturer.observability.metrics import Metrics
from log_capturer.sources.kafka.config import KafkaSourceConfig
from log_capturer.sources.kafka.source import KafkaSource, consumer_config
from tests.integration.sources.test_kafka_source import make_topic, produce
from tests.unit.sources.harness import MemorySink, make_dispatcher

pytestmark = pytest.mark.integration


@contextmanager
def assigned_source(bootstrap: str, topic: str, group: str, reset: str) -> Iterator[KafkaSource]:
    """A source whose real consumer has the topic's three partitions assigned, never polled."""
    metrics = Metrics()
    cfg = KafkaSourceConfig(
        enabled=True,
        brokers=bootstrap.split(","),
        group_id=group,
        topics=[topic],
        auto_offset_reset=reset,  # type: ignore[arg-type]
    )
    src = KafkaSource(cfg, make_dispatcher(MemorySink(), metrics), metrics)
    consumer = Consumer(consumer_config(cfg))
    tps = [TopicPartition(topic, p) for p in range(3)]
    consumer.assign(tps)
    src._consumer = consumer
    src._on_assign(consumer, tps)
    try:
        yield src
    finally:
        src._consumer = None
        consumer.close()


def lag_metric(src: KafkaSource, topic: str, partition: int) -> float | None:
    value = src.metrics.registry.get_sample_value(
        "kafka_source_lag", {"topic": topic, "partition": str(partition)}
    )
    return value


def test_lag_of_partitions_never_read(bootstrap: str, topic_prefix: str) -> None:
    topic, group = f"{topic_prefix}-lag", f"{topic_prefix}-g"
    make_topic(bootstrap, topic)
    produce(bootstrap, topic, 300)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "lag-reader"})
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3)}
    finally:
        c.close()
    assert all(end > 20 for end in ends.values()), ends
    # Partition 0: the group committed offset 5 earlier. Partition 1: records before offset 10
    # deleted (the low watermark is 10), nothing committed. Partition 2: nothing committed.
    committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committer.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
    finally:
        committer.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_records([TopicPartition(topic, 1, 10)]).values():
        fut.result(30)

    with assigned_source(bootstrap, topic, group, "earliest") as src:
        src._measure_lag()
        assert src._lag == {(topic, 0): ends[0] - 5, (topic, 1): ends[1] - 10, (topic, 2): ends[2]}
        assert src.consumed == 0  # never read: measured from the broker alone
        for p, expected in src._lag.items():
            assert lag_metric(src, topic, p[1]) == expected
        parts = src.stats()["partitions"]
        assert parts[f"{topic}:0"]["committed"] == 5
        assert parts[f"{topic}:1"]["committed"] == -1
        assert {p["high_watermark"] for p in parts.values()} == set(ends.values())
        assert src.stats()["lag"] == src.health()["lag"] == ends[0] - 5 + ends[1] - 10 + ends[2]

    # 'latest' with nothing committed starts at the end: no lag until records arrive; the group's
    # committed offset still counts where there is one.
    with assigned_source(bootstrap, topic, group, "latest") as src:
        src._measure_lag()
        assert src._lag == {(topic, 0): ends[0] - 5, (topic, 1): 0, (topic, 2): 0}
        produce(bootstrap, topic, 30, start=300)
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "lag-reader"})
        try:
            now = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3)}
        finally:
            c.close()
        src._measure_lag()
        assert src._lag == {(topic, p): now[p] - (5 if p == 0 else ends[p]) for p in range(3)}
        assert sum(src._lag.values()) == sum(now.values()) - sum(ends.values()) + ends[0] - 5
        # A revoked partition's lag is no longer exported.
        src._on_revoke(src._consumer, [TopicPartition(topic, 2)])  # type: ignore[arg-type]
        assert lag_metric(src, topic, 2) is None
        src._measure_lag()
        assert set(src._lag) == {(topic, 0), (topic, 1)}


def test_an_unanswered_lag_query_is_not_repeated_at_every_measure(tmp_path: Path) -> None:
    """With no broker (a closed port), the lag measure's queries time out once, then back off:
    the poll loop is not held for QUERY_TIMEOUT at every commit_interval."""
    port = free_port()  # nothing listens there
    with assigned_source(f"127.0.0.1:{port}", "logs", "g", "earliest") as src:
        started = time.monotonic()
        src._measure_lag()
        first = time.monotonic() - started
        assert src._lag == {} and src._query_backoff_until > time.monotonic()
        started = time.monotonic()
        src._measure_lag()
        assert time.monotonic() - started < 0.5 <= first, "the second measure must not wait again"
