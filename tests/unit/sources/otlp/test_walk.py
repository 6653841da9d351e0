"""The C walk of OTLP protobuf requests (``_walk.c``) gives exactly what the Python walk gives:
the same chunks (lines, fields, levels, times, labels) and the same rejected records, on random
requests and on the edge cases; what it cannot decide as protobuf would, it leaves to Python."""

from __future__ import annotations

import dataclasses
import random
import struct
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from log_capturer.record import Chunk
from log_capturer.sources.http.source import Rejected
from log_capturer.sources.listener import Group, chunks_of
from log_capturer.sources.otlp import _walk
from log_capturer.sources.otlp.decode import PROTOBUF, OtlpError, level_of
from tests.unit.sources.otlp.test_decode import av, decoder, kv

CONFIGS = [
    {},
    {"resource_attributes_as_labels": ["service.name", "host.name"], "scope_attributes_as_labels": ["team"]},
]


TEXTS = ["", " ", "\t\n", "\u2003", "ok", "payment failed", "é€😀", "x" * 300, "line\n", '{"a": 1}']


def rand_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice(TEXTS)
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, -1, 2**63 - 1, -(2**63), rng.randrange(-(10**6), 10**6)])
    if kind == 3:
        return rng.choice([0.0, -1.5, 3.25e300, float("inf"), float("nan")])
    if kind == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(7)))
    if kind == 5:
        return None
    if kind in (6, 7):
        return {f"k{i}": rand_value(rng, depth + 1) for i in range(rng.randrange(4))}
    return [rand_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def rand_record(rng: random.Random) -> LogRecord:
    rec = LogRecord()
    if rng.random() < 0.9:
        body = rng.choice([rng.choice(TEXTS), rng.choice(TEXTS), rand_value(rng)])
        rec.body.CopyFrom(av(body))
    if rng.random() < 0.7:
        rec.time_unix_nano = rng.choice([1, 1_764_057_600_123_456_789, 2**64 - 1])
    if rng.random() < 0.5:
        rec.observed_time_unix_nano = 1_764_057_601_000_000_000
    if rng.random() < 0.7:
        rec.severity_number = rng.choice([0, 1, 4, 5, 9, 12, 13, 17, 21, 24, 25, 99, -3])  # type: ignore[assignment]
    if rng.random() < 0.6:
        rec.severity_text = rng.choice(["", "INFO", "Warning", "err", "bogus", "30", "é"])
    if rng.random() < 0.6:
        rec.trace_id = rng.choice([bytes(range(1, 17)), bytes(16), bytes(15), b"\xff" * 16, b"\x01"])
    if rng.random() < 0.6:
        rec.span_id = rng.choice([bytes(range(1, 9)), bytes(8), bytes(9), b"\xab" * 8])
    if rng.random() < 0.4:
        rec.flags = rng.choice([1, 0x100, 0x1FF, 2**32 - 1])
    if rng.random() < 0.3:
        rec.event_name = rng.choice(["", "login", "ü"])
    if rng.random() < 0.3:
        rec.dropped_attributes_count = 3
    for i in range(rng.choice([0, 0, 1, 3])):
        rec.attributes.append(kv(rng.choice(["a", "b", f"k{i}", "é"]), rand_value(rng)))
    return rec


def rand_request(rng: random.Random) -> bytes:
    req = ExportLogsServiceRequest()
    for _ in range(rng.randrange(1, 4)):
        rl = ResourceLogs()
        if rng.random() < 0.8:
            rl.resource.attributes.append(kv("service.name", rng.choice(["checkout", "cart"])))
            if rng.random() < 0.5:
                rl.resource.attributes.append(kv("host.name", rng.choice(["h1", 7, {"x": 1}])))
        if rng.random() < 0.2:
            rl.schema_url = "https://opentelemetry.io/schemas/1.21.0"
        for _ in range(rng.randrange(0, 3)):
            sl = ScopeLogs()
            if rng.random() < 0.7:
                sl.scope.name = rng.choice(["app", "lib.db"])
                sl.scope.version = rng.choice(["", "1.0"])
            if rng.random() < 0.5:
                sl.scope.attributes.append(kv("team", rng.choice(["pay", "ops", True])))
            sl.log_records.extend(rand_record(rng) for _ in range(rng.randrange(0, 12)))
            rl.scope_logs.append(sl)
        req.resource_logs.append(rl)
    return req.SerializeToString()


def both(body: bytes, cfg: dict[str, Any]) -> tuple[Any, Any, bool]:
    """(C walk's result, Python walk's result, whether the C walk took the request)."""
    dec = decoder(**cfg)
    groups: dict[int, Group] = {}
    rejected: list[Rejected] = []
    took = dec._walked(body, groups, rejected)
    walked = (columns(groups), [dataclasses.astuple(r) for r in rejected]) if took else None
    groups2: dict[int, Group] = {}
    rejected2: list[Rejected] = []
    decoder(**cfg)._protobuf(body, groups2, rejected2)
    python = (columns(groups2), [dataclasses.astuple(r) for r in rejected2])
    return walked, python, took


def columns(groups: dict[int, Group]) -> list[Any]:
    # orjson: NaN and nested values compared as the Kafka record will carry them.
    return [(g.origin.labels, g.lines, orjson.dumps(g.fields), g.levels, g.stamps) for g in groups.values()]


def shape(chunks: list[Chunk]) -> list[Any]:
    # orjson: NaN and nested values compared as the Kafka record will carry them.
    return [
        (
            c.origin.labels,
            c.lines,
            orjson.dumps(c.meta),
            c.preset_levels,
            c.timestamps is not None,
        )
        for c in chunks
    ]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_random_requests_decode_as_the_python_walk(cfg: dict[str, Any]) -> None:
    rng = random.Random(24)
    taken = 0
    for _ in range(400):
        body = rand_request(rng)
        walked, python, took = both(body, cfg)
        assert took, "a well-formed request is walked in C"
        taken += 1
        assert walked[0] == python[0]
        assert orjson.dumps(walked[1]) == orjson.dumps(python[1])
    assert taken == 400


def test_rejections_carry_the_record_and_its_reason() -> None:
    recs = [
        LogRecord(body=av("ok"), trace_id=bytes(15)),
        LogRecord(body=av("  ")),
        LogRecord(body=av("fine"), span_id=bytes(3)),
        LogRecord(),
        LogRecord(body=av("good"), trace_id=bytes(range(16)), span_id=bytes(range(1, 9))),
    ]
    rl = ResourceLogs(scope_logs=[ScopeLogs(log_records=recs)])
    body = ExportLogsServiceRequest(resource_logs=[rl]).SerializeToString()
    walked, python, took = both(body, {})
    assert took
    assert walked == python
    reasons = [(r[0], r[1]) for r in walked[1]]
    assert reasons == [(1, "invalid_trace_id"), (2, "empty_body"), (3, "invalid_trace_id"), (4, "empty_body")]
    assert walked[0][0][1] == ["good"]


def field(num: int, wire: int, payload: bytes) -> bytes:
    def varint(v: int) -> bytes:
        out = b""
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                out += bytes([b | 0x80])
            else:
                return out + bytes([b])

    key = varint(num << 3 | wire)
    return key + (varint(len(payload)) + payload if wire == 2 else payload)


def in_request(record: bytes) -> bytes:
    return field(1, 2, field(2, 2, field(2, 2, record)))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(in_request(field(5, 2, field(1, 2, b"\xff\xfe"))), id="body text not UTF-8"),
        pytest.param(
            in_request(field(5, 2, field(1, 2, b"a")) + field(5, 2, field(1, 2, b"b"))), id="body twice"
        ),
        pytest.param(in_request(field(5, 2, field(1, 2, b"a") + field(3, 0, b"\x01"))), id="two values"),
        pytest.param(in_request(field(1, 0, b"\x01")), id="time as a varint"),
        pytest.param(in_request(field(5, 2, field(1, 2, b"a"))[:-1]), id="truncated"),
        pytest.param(in_request(field(3, 2, b"\xc3")), id="severity text not UTF-8"),
        pytest.param(in_request(field(4, 3, b"")), id="a group"),
        pytest.param(field(1, 2, field(1, 2, b"") + field(1, 2, b"")), id="resource twice"),
    ],
)
def test_what_protobuf_decides_is_left_to_the_python_walk(body: bytes) -> None:
    dec = decoder()
    assert not dec._walked(body, {}, [])
    # And decode() still gives the Python walk's answer (records, or 400).
    try:
        chunks, rejected = dec.decode(body, PROTOBUF)
    except OtlpError as exc:
        assert exc.status == 400
    else:
        groups: dict[int, Group] = {}
        bad: list[Rejected] = []
        dec._protobuf(body, groups, bad)
        assert shape(chunks) == shape(chunks_of(groups.values()))
        assert [dataclasses.astuple(r) for r in rejected] == [dataclasses.astuple(r) for r in bad]


def test_unknown_fields_are_skipped_as_protobuf_skips_them() -> None:
    record = (
        field(5, 2, field(1, 2, b"hello") + field(9, 0, b"\x05"))
        + field(20, 0, b"\x07")
        + field(21, 1, struct.pack("<d", 1.0))
        + field(22, 5, b"\x00\x00\x00\x01")
        + field(23, 2, b"zz")
        + field(1, 1, struct.pack("<Q", 123))
    )
    body = in_request(record) + field(9, 2, b"junk")
    walked, python, took = both(body, {})
    assert took
    assert walked == python
    assert walked[0][0][1] == ["hello"]


def test_deep_nesting_is_left_to_the_python_walk() -> None:
    value = field(1, 2, b"leaf")  # AnyValue{string_value}
    for _ in range(70):
        value = field(5, 2, field(1, 2, value))  # AnyValue{array_value: ArrayValue{values: [value]}}
    body = in_request(field(5, 2, value))
    dec = decoder()
    assert not dec._walked(body, {}, [])
    with pytest.raises(OtlpError) as caught:  # deeper than protobuf reads: 400, as before
        dec.decode(body, PROTOBUF)
    assert caught.value.status == 400


def test_records_checks_its_bounds() -> None:
    with pytest.raises(ValueError, match="within body"):
        _walk.records(b"abc", 0, 9, {}, 0, level_of, orjson.dumps)
    assert _walk.scopes(b"\x0a\x05ab") is None


def test_without_the_c_module_the_python_walk_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """An install without a C compiler has no ``_walk``: requests are decoded by the Python walk."""
    from log_capturer.sources.otlp import decode

    body = rand_request(random.Random(3))
    expected = both(body, {})[1]
    monkeypatch.setattr(decode, "_walk", None)
    dec = decoder()
    assert not dec._walked(body, {}, [])
    groups: dict[int, Group] = {}
    rejected: list[Rejected] = []
    dec._protobuf(body, groups, rejected)
    assert (columns(groups), [dataclasses.astuple(r) for r in rejected]) == expected
    chunks, _ = dec.decode(body, PROTOBUF)
    assert [c.lines for c in chunks] == [c.lines for c in chunks_of(groups.values())]
