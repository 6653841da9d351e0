"""The Kafka source's own logic, driven by hand with confluent-kafka's real ``Message`` objects,
the real dispatcher and an in-memory sink: how values become records, where the offsets go, and
that nothing is committable before every sink acknowledged it. The consumer itself (polls,
commits, rebalances) is tested against a real broker in tests/integration/sources."""

from __future__ import annotations

import time

import orjson
from confluent_kafka import Message

from log_capturer.observability.metrics import Metrics
from log_capturer.sources.kafka.config import KafkaSourceConfig
from log_capturer.sources.kafka.source import KafkaSource
from tests.unit.sources.harness import MemorySink, make_dispatcher

TP = ("logs", 2)


def message(offset: int, value: bytes, key: bytes | None = None, ts: int = 1_700_000_000_000) -> Message:
    return Message(
        topic=TP[0],
        partition=TP[1],
        offset=offset,
        key=key,
        value=value,
        headers=[("trace", b"abc")],
        timestamp=(1, ts),
    )


def source(sink: MemorySink, **cfg: object) -> KafkaSource:
    metrics = Metrics()
    src = KafkaSource(KafkaSourceConfig(enabled=True, **cfg), make_dispatcher(sink, metrics), metrics)  # type: ignore[arg-type]
    src._assigned.add(TP)
    src.marks.assign([TP])
    return src


def wait_for(pred: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


AGENT_RECORD = orjson.dumps(
    {
        "timestamp": "2026-12-01T10:00:00.000000001Z",
        "message": "agent line",
        "level": "error",
        "source_type": "file",
        "source_id": "/var/log/app.log",
        "labels": {"app": "shop"},
        # A record that was itself consumed once: its old kafka field is replaced by this read's.
        "fields": {"user": "u1", "kafka": {"offset": 999}},
    }
)


def test_values_become_records_with_their_offsets_and_kafka_metadata() -> None:
    sink = MemorySink()
    src = source(sink)
    src._take(
        [
            message(10, AGENT_RECORD, b"k1"),
            message(11, b"plain text line"),
            message(13, b'{"msg": "json line", "severity": "warning"}'),  # 12: a transaction marker
        ]
    )
    chunks = [c for c, _seg, _tp in src._backlog]
    by_line = {line: (c, i) for c in chunks for i, line in enumerate(c.lines)}
    agent, i = by_line["agent line"]
    assert (agent.origin.source_type, agent.origin.source_id, agent.origin.labels) == (
        "file",
        "/var/log/app.log",
        {"app": "shop"},
    )
    assert agent.meta is not None and agent.meta[i] is not None
    assert agent.meta[i]["user"] == "u1"
    assert agent.meta[i]["kafka"] == {
        "topic": "logs",
        "partition": 2,
        "offset": 10,
        "key": "k1",
        "timestamp": 1_700_000_000_000,
        "headers": {"trace": "abc"},
    }
    raw, j = by_line["plain text line"]
    assert (raw.origin.source_type, raw.origin.source_id) == ("kafka", "logs")
    assert raw.timestamps is not None and raw.timestamps[j] == 1_700_000_000_000 * 1_000_000
    for c in chunks:
        assert c.stream == "logs:2"
        assert c.offsets == [m["kafka"]["offset"] for m in c.meta or []]
    assert sorted(o for c in chunks for o in c.offsets or []) == [10, 11, 13]


def test_nothing_is_committable_before_every_record_is_acknowledged() -> None:
    sink = MemorySink()
    sink.hold = True
    src = source(sink)
    src._take([message(0, b"a"), message(1, AGENT_RECORD)])
    src._take([message(2, b"c")])
    src._submit_backlog()
    wait_for(lambda: len(sink.held) == 3)
    assert src.marks.to_commit() == {}
    assert src.marks.in_flight == 3
    # The second poll's chunk acknowledged first: still nothing, the first poll is in flight.
    last = next(c for c in sink.held if c.lines == ["c"])
    last.ack(1)
    assert src.marks.to_commit() == {}
    sink.release()
    wait_for(lambda: src.marks.to_commit() == {TP: 3})
    assert src.marks.in_flight == 0


def test_format_json_rejects_what_is_not_an_object_and_holds_the_offset_without_a_dlq() -> None:
    sink = MemorySink()
    src = source(sink, format="json")
    src._take([message(0, b'{"message": "ok"}'), message(1, b"not json"), message(2, b"[1, 2]")])
    assert [line for c, _s, _t in src._backlog for line in c.lines] == ["ok"]
    assert src.rejected == 2
    src._submit_backlog()
    wait_for(lambda: sink.lines() == ["ok"])
    time.sleep(0.05)
    # No local DLQ to park them in: the offset stays before them (read again after a restart).
    assert src.marks.to_commit() == {}


def test_raw_takes_json_as_text() -> None:
    sink = MemorySink()
    src = source(sink, format="raw")
    src._take([message(0, b'{"message": "x"}')])
    assert [line for c, _s, _t in src._backlog for line in c.lines] == ['{"message": "x"}']


def test_records_handed_over_again_within_an_assignment_are_skipped() -> None:
    """librdkafka moved a partition's fetch position back to its first offset (a stale offset
    lookup after a pause): the records read already are not read twice; the new ones are."""
    sink = MemorySink()
    src = source(sink)
    src._take([message(0, b"a"), message(1, b"b"), message(2, b"c")])
    src._submit_backlog()
    wait_for(lambda: src.marks.to_commit() == {TP: 3})
    src._take([message(0, b"a"), message(1, b"b")])  # all of it read already
    src._take([message(1, b"b"), message(2, b"c"), message(3, b"d")])
    src._submit_backlog()
    wait_for(lambda: src.marks.to_commit() == {TP: 4})
    assert sink.lines() == ["a", "b", "c", "d"]
    assert (src.consumed, src.reread_skipped) == (4, 4)
    # Revoked and assigned again: its next owner may have committed less; all is read again.
    src.marks.revoke([TP])
    src.marks.assign([TP])
    src._take([message(2, b"c")])
    src._submit_backlog()
    wait_for(lambda: sink.lines() == ["a", "b", "c", "d", "c"])
