"""What the Kafka sink sends, built without a broker: topics by level, keys, explicit partitions,
headers, the refusals before produce, and a dead letter's headers."""

from __future__ import annotations

from typing import Any

import orjson

from log_capturer.engine.contract import Record, Refused
from log_capturer.observability.metrics import Metrics
from log_capturer.processing import Analyzer
from log_capturer.record import Chunk, ChunkGroup, Origin
from log_capturer.sinks.kafka.config import KafkaSinkConfig
from log_capturer.sinks.kafka.headers import HOST
from log_capturer.sinks.kafka.request import RequestBuilder, dead_letter_headers, routing
from log_capturer.sinks.kafka.service import KafkaService

BOUNDS = tuple(float(b) for b in Metrics().kafka_message_size.bounds)


def config(**section: Any) -> KafkaSinkConfig:
    return KafkaSinkConfig.model_validate(section)


def builder(counts: dict[str, int] | None = None, **section: Any) -> RequestBuilder:
    """A builder whose topics have ``counts`` partitions (unknown topics: None)."""
    known = counts or {}
    return RequestBuilder(config(**section), BOUNDS, known.get)


def chunk(*lines: str, key_field: str | None = "tenant_id", **labels: str) -> Chunk:
    c = Chunk(
        Origin("file", "/var/log/a.log", dict(labels)), list(lines), read_time_ns=1_700_000_000_000_000_000
    )
    Analyzer(key_field).analyze(c)
    return c


LINES = (
    '{"level":"error","tenant_id":"t1","msg":"a"}',
    '{"level":"info","msg":"b"}',
    "DEBUG plain c",
    "no level at all",
)


def test_routing_by_level_and_without_priority_routing() -> None:
    on = routing(config())
    assert (on["critical"], on["warn"], on["trace"], on[""]) == (
        "logs-high-priority",
        "logs-normal-priority",
        "logs-low-priority",
        "logs",
    )
    off = routing(config(topic="all", priority_routing={"enabled": False}))
    assert set(off.values()) == {"all"}


def test_a_request_holds_each_lines_topic_key_value_and_tallies() -> None:
    b = builder()
    req = b.build(chunk(*LINES))
    assert req.topics == ["logs-high-priority", "logs-normal-priority", "logs-low-priority", "logs"]
    # The line's key, else the source id (the default key).
    assert req.keys == ["t1", "/var/log/a.log", "/var/log/a.log", "/var/log/a.log"]
    assert [orjson.loads(v)["message"] for v in req.values] == list(LINES)
    assert req.counts == {t: 1 for t in req.topics}
    assert req.nbytes == sum(map(len, req.values)) and req.longest == max(map(len, req.values))
    # tallied: [records, bytes, then how many are at most each histogram bound]
    row = req.tallied["logs"]
    assert row[:2] == [1, len(req.values[3])] and row[2:] == [int(len(req.values[3]) <= x) for x in BOUNDS]
    assert req.partitions is None and req.headers is None
    assert b.records_of(chunk(*LINES)) == [
        Record(t, v, k) for t, v, k in zip(req.topics, req.values, req.keys, strict=True)
    ]


def other_chunk(*lines: str, path: str, **labels: str) -> Chunk:
    c = Chunk(Origin("file", path, dict(labels)), list(lines), read_time_ns=1_700_000_001_000_000_000)
    Analyzer("tenant_id").analyze(c)
    return c


def test_a_group_of_chunks_is_each_chunks_records_in_one_request() -> None:
    b = builder()
    chunks = [
        chunk(*LINES),
        other_chunk("INFO b1", path="/b.log", tenant_id="tb"),
        other_chunk(*LINES[:2], path="/c.log"),
    ]
    one_by_one = [b.build(c) for c in chunks]
    req = b.build_many(ChunkGroup(chunks))
    assert req is not None and req.chunk.chunks == chunks
    # Each record encoded with its own chunk's origin, time and key.
    assert req.values == [v for r in one_by_one for v in r.values]
    assert req.topics == [t for r in one_by_one for t in r.topics]
    assert req.keys == [k for r in one_by_one for k in r.keys or ()]
    assert [orjson.loads(v)["source_id"] for v in req.values[3:6]] == ["/var/log/a.log", "/b.log", "/c.log"]
    assert req.keys[4] == "tb" and req.keys[6] == "/c.log"
    assert req.nbytes == sum(r.nbytes for r in one_by_one)
    assert req.longest == max(r.longest for r in one_by_one)
    totals: dict[str, int] = {}
    for r in one_by_one:
        for t, n in r.counts.items():
            totals[t] = totals.get(t, 0) + n
    assert req.counts == totals
    # What the engine parks for the group: each chunk's records.
    assert b.records_of(ChunkGroup(chunks)) == [rec for c in chunks for rec in b.records_of(c)]
    # Without a key field, no keys.
    assert builder(partitioning={"enabled": False}).build_many(ChunkGroup(chunks)).keys is None  # type: ignore[union-attr]


def test_chunks_are_not_grouped_with_headers_or_explicit_partitions_or_exactly_once() -> None:
    assert builder().groups and not builder(headers=["level"]).groups
    eos = {"delivery": "exactly_once", "required_acks": -1, "exactly_once": {"transactional_id": "t"}}
    for section, grouping in (({}, True), (eos, False), ({"headers": ["level"]}, False)):
        service = KafkaService(config(**section), Metrics(), "kafka_sink", "kafka")
        assert service.grouping is grouping, section
    chunks = [chunk(*LINES), other_chunk("b", path="/b.log")]
    assert builder(headers=["level"]).build_many(ChunkGroup(chunks)) is None
    assert (
        builder({"logs": 3}, partitioning={"strategy": "round-robin"}).build_many(ChunkGroup(chunks)) is None
    )


def test_codec_raw_into_the_chunk_producer_sends_ascii_lines_as_they_are() -> None:
    b = builder(encoding={"codec": "raw"}, max_message_bytes=1024)
    b.lines_as_values = True  # the sink's chunk producer takes the ASCII lines themselves
    big = "x" * 2000
    req = b.build(chunk(*LINES, big))
    assert req.values == [*LINES, big] and all(type(v) is str for v in req.values)
    assert req.record_values() == [line.encode() for line in (*LINES, big)]
    # Tallies and sizes as for the encoded bytes; what is refused is refused as bytes.
    encoded = builder(encoding={"codec": "raw"}, max_message_bytes=1024).build(chunk(*LINES, big))
    assert type(encoded.values[0]) is bytes
    assert (req.tallied, req.longest, req.nbytes) == (encoded.tallied, encoded.longest, encoded.nbytes)
    refused: list[Refused] = []
    ok = list(b.producible(req, refused))
    assert [v for _, _, v, *_ in ok] == [line.encode() for line in LINES]
    assert [(r.reason, r.record.value) for r in refused] == [("message_too_large", big.encode())]
    # A chunk with a line that is not ASCII: encoded, as without the chunk producer.
    mixed = b.build(chunk(*LINES, "caf\u00e9"))
    assert mixed.values == [*encoded.values[:4], "caf\u00e9".encode()]
    # The envelope (json) is never the lines.
    assert type(builder().build(chunk(*LINES)).values[0]) is bytes


def test_keys_a_label_wins_and_no_key_field_means_no_keys() -> None:
    labelled = builder().build(chunk(*LINES, tenant_id="from-label"))
    assert labelled.keys == ["from-label"] * len(LINES)
    unkeyed = builder(partitioning={"enabled": False}).build(chunk(*LINES, key_field=None))
    assert unkeyed.keys is None
    assert all("fields" in orjson.loads(v) and orjson.loads(v)["fields"] == {} for v in unkeyed.values)


def test_round_robin_partitions_cycle_per_topic_and_wait_for_metadata() -> None:
    b = builder({"logs": 3}, priority_routing={"enabled": False}, partitioning={"strategy": "round-robin"})
    first = b.build(chunk("a", "b"))
    second = b.build(chunk("c", "d"))
    assert (first.partitions, second.partitions) == ([0, 1], [2, 0])
    # A topic whose partition count is unknown: librdkafka's partitioner (-1).
    unknown = builder(partitioning={"strategy": "round-robin"}).build(chunk("x"))
    assert unknown.partitions == [-1]


def test_manual_partitions_and_what_is_refused_before_produce() -> None:
    b = builder(
        {"logs": 4},
        priority_routing={"enabled": False},
        partitioning={"strategy": "manual", "key_field": "p"},
        max_message_bytes=1024,
    )
    big = '{"p":"1","msg":"' + "x" * 2000 + '"}'
    req = b.build(chunk('{"p":"2"}', '{"p":"9"}', '{"p":"two"}', big, '{"p":"0"}', key_field="p"))
    refused: list[Refused] = []
    ok = list(b.producible(req, refused))
    assert [(i, topic, key, part, hdrs) for i, topic, _v, key, part, hdrs in ok] == [
        (0, "logs", "2", 2, None),
        (4, "logs", "0", 0, None),
    ]
    assert [(r.reason, r.record.key) for r in refused] == [
        ("invalid_partition", "9"),
        ("invalid_partition", "two"),
        ("message_too_large", "1"),
    ]
    assert "partition 9 does not exist in topic 'logs' (it has 4 partitions: 0-3)" in refused[0].text
    assert refused[2].text == f"record of {len(req.values[3])} bytes exceeds max_message_bytes=1024"
    # From a later record on (an interrupted hand-over): only the rest.
    later: list[Refused] = []
    assert [i for i, *_ in b.producible(req, later, 3)] == [4] and len(later) == 1


def test_headers_per_level_in_the_configured_order() -> None:
    b = builder(headers=["host", "level", "source_id"])
    req = b.build(chunk(*LINES))
    assert req.headers is not None
    assert req.headers["error"] == [("host", HOST), ("level", b"error"), ("source_id", b"/var/log/a.log")]
    hdrs = [h for *_, h in b.producible(req, [])]
    assert [h[1] for h in hdrs if h is not None] == [
        ("level", b"error"),
        ("level", b"info"),
        ("level", b"debug"),
        ("level", b""),
    ]


def test_dead_letter_headers_keep_the_records_own_and_say_why() -> None:
    rec = Record("logs", b"{}", "k", -1, [("level", b"info")])
    hdrs = dict(dead_letter_headers(rec, "send_error", "invalid_record: bad \udcff", "kafka_sink"))
    assert hdrs["level"] == b"info"
    assert (hdrs["dlq_error_type"], hdrs["dlq_original_topic"], hdrs["dlq_failed_sink"]) == (
        b"send_error",
        b"logs",
        b"kafka_sink",
    )
    assert hdrs["dlq_error_message"] == b"invalid_record: bad \\udcff"
    assert isinstance(hdrs["dlq_timestamp"], bytes) and hdrs["dlq_timestamp"].endswith(b"Z")
