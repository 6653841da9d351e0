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

from log_capturer.record import Chunk, EncodedFields
from log_capturer.sources.http.source import Rejected
from log_capturer.sources.listener import Group, chunks_of
from log_capturer.sources.otlp import _walk
from log_capturer.sources.otlp.decode import FIELD_MEMBERS, PROTOBUF, OtlpError, level_of
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
    # orjson: NaN and nested values compared as the Kafka record will carry them; fields the C
    # walk wrote as JSON compared as their bytes (a Fragment is written as it is).
    return [(g.origin.labels, g.lines, fields_json(g.fields), g.levels, g.stamps) for g in groups.values()]


def fields_json(fields: list[Any]) -> bytes:
    return orjson.dumps([orjson.Fragment(f) if isinstance(f, bytes) else f for f in fields])


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


# -- each record's fields as JSON, written from the wire (records(..., common_json)) ---------------
def walk_one(record: LogRecord | bytes, common: dict[str, Any] | None = None, as_json: bool = True) -> Any:
    """The fields the C walk gives for one record (in a scope whose common part is ``common``)."""
    raw = record if isinstance(record, bytes) else record.SerializeToString()
    body = in_request(raw)
    layout = _walk.scopes(body)
    assert layout is not None
    _, _, _, start, end = layout[0]
    common = common or {}
    got = _walk.records(
        body, start, end, common, 0, level_of, orjson.dumps, orjson.dumps(common) if as_json else None
    )
    if got is None:
        return None
    _, fields, _, _, rejected, count = got
    assert count == 1 and not rejected
    return fields[0]


EVERY_KIND = [
    "plain",
    "",
    'quote " backslash \\ slash /',
    "controls \x00\x01\x08\t\n\x0b\x0c\r\x1f\x7f",
    "é€😀 \u2028\u2029 \ufeff",
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    0.0,
    -0.0,
    1.5,
    1e16,
    3.25e300,
    5e-324,
    0.1,
    b"",
    b"\x00",
    b"ab",
    b"abc",
    bytes(range(256)),
    None,
    [],
    [1, "two", [3.5, None], {"k": b"\xff"}],
    {},
    {"nested": {"deeper": [True, {"x": "é"}]}, "": "empty key"},
]


@pytest.mark.parametrize("value", EVERY_KIND, ids=repr)
def test_every_any_value_kind_is_written_as_dumps_writes_it(value: Any) -> None:
    record = LogRecord(body=av("line"), attributes=[kv("v", value), kv('é\n"', value)])
    as_dict = walk_one(record, as_json=False)
    as_json = walk_one(record)
    assert isinstance(as_json, bytes)
    assert as_json == orjson.dumps(as_dict)
    assert orjson.loads(as_json) == as_dict


def test_every_member_in_the_dicts_order_after_the_common_part() -> None:
    common = {"resource": {"service.name": "checkout", "n": 3}, "scope": {"name": "app", "version": "1.0"}}
    record = LogRecord(
        body=av("line"),
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        flags=0x1FF,
        severity_text="Warning",
        severity_number=13,  # type: ignore[arg-type]
        event_name="login ü",
        attributes=[kv("tenant_id", "t-1"), kv("n", 7)],
    )
    as_json = walk_one(record, common)
    assert as_json == orjson.dumps(walk_one(record, common, as_json=False))
    assert list(orjson.loads(as_json)) == [
        "resource",
        "scope",
        "trace_id",
        "span_id",
        "trace_flags",
        "severity_text",
        "severity_number",
        "event_name",
        "attributes",
    ]
    assert set(orjson.loads(as_json)) <= FIELD_MEMBERS
    # Only the common part, and nothing at all.
    assert walk_one(LogRecord(body=av("x")), common) == orjson.dumps(common)
    assert walk_one(LogRecord(body=av("x"))) is None
    assert walk_one(LogRecord(body=av("x"), trace_id=bytes(16), span_id=bytes(8))) is None  # zeros: absent
    # A negative severity number, as protobuf reads it.
    negative = LogRecord(body=av("x"), severity_number=-3)  # type: ignore[arg-type]
    assert walk_one(negative) == orjson.dumps(walk_one(negative, as_json=False)) == b'{"severity_number":-3}'


@pytest.mark.parametrize(
    ("attributes", "kind"),
    [
        pytest.param([kv("a", 1), kv("b", 2), kv("a", 3)], dict, id="a key given twice"),
        pytest.param([kv("m", {"k": 1}), kv("x", [{"k": 1}])], bytes, id="one key in two maps"),
        pytest.param([kv("deep", [{"k": 1}, {"k": 2}])], bytes, id="one key in two list items"),
        pytest.param([kv("nan", float("nan"))], dict, id="NaN"),
        pytest.param([kv("inf", [float("-inf")])], dict, id="infinity in a list"),
        pytest.param([kv(f"k{i}", i) for i in range(65)], dict, id="65 members"),
        pytest.param([kv(f"k{i}", i) for i in range(64)], bytes, id="64 members"),
    ],
)
def test_what_json_cannot_carry_exactly_gets_its_dict(attributes: list[Any], kind: type) -> None:
    record = LogRecord(body=av("line"), attributes=attributes)
    as_dict = walk_one(record, as_json=False)
    got = walk_one(record)
    assert type(got) is kind
    if kind is bytes:
        assert got == orjson.dumps(as_dict)
    else:
        assert orjson.dumps(got) == orjson.dumps(as_dict)
        assert list(got["attributes"]) == list(as_dict["attributes"])  # the dict's order


def test_a_duplicate_inside_a_map_value_gets_the_dict() -> None:
    dup = field(6, 2, field(1, 2, field(1, 2, b"k") + field(2, 2, field(3, 0, b"\x01"))) * 2)  # {k:1,k:1}
    record = field(5, 2, field(1, 2, b"line")) + field(6, 2, field(1, 2, b"m") + field(2, 2, dup))
    got = walk_one(record)
    assert isinstance(got, dict)
    assert got == walk_one(record, as_json=False) == {"attributes": {"m": {"k": 1}}}


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(field(5, 2, field(1, 2, b"x")) + field(6, 2, field(1, 2, b"\xc3")), id="key not UTF-8"),
        pytest.param(
            field(5, 2, field(1, 2, b"x"))
            + field(6, 2, field(1, 2, b"k") + field(2, 2, field(1, 2, b"\xed\xa0\x80"))),
            id="value a surrogate",
        ),
        pytest.param(
            field(5, 2, field(1, 2, b"x"))
            + field(6, 2, field(1, 2, b"k") + field(2, 2, field(1, 2, b"\xf4\x90\x80\x80"))),
            id="value past U+10FFFF",
        ),
        pytest.param(
            field(5, 2, field(1, 2, b"x"))
            + field(6, 2, field(1, 2, b"k") + field(2, 2, field(1, 2, b"\xe0\x80\xaf"))),
            id="value overlong",
        ),
        pytest.param(field(5, 2, field(1, 2, b"x")) + field(12, 2, b"\xff"), id="event name not UTF-8"),
        pytest.param(
            field(5, 2, field(1, 2, b"x")) + field(6, 2, field(1, 2, b"k") + field(2, 2, field(3, 2, b"x"))),
            id="int value as LEN",
        ),
        pytest.param(
            field(5, 2, field(1, 2, b"x")) + field(6, 2, field(1, 2, b"k") + field(2, 2, b"\x0a\x05ab")),
            id="value truncated",
        ),
        pytest.param(
            field(5, 2, field(1, 2, b"x"))
            + field(
                6, 2, field(1, 2, b"k") + field(2, 2, field(1, 2, b"a")) + field(2, 2, field(1, 2, b"b"))
            ),
            id="a value given twice",
        ),
    ],
)
def test_what_protobuf_decides_in_the_fields_is_left_to_python(record: bytes) -> None:
    assert walk_one(record) is None
    assert walk_one(record, as_json=False) is None
    dec = decoder()
    assert not dec._walked(in_request(record), {}, [])


def test_valid_utf8_of_every_length_is_taken() -> None:
    text = "a\u00e9\u0800\uffff\U00010000\U0010ffff" * 3
    record = LogRecord(body=av("x"), event_name=text, attributes=[kv(text, text)])
    got = walk_one(record)
    assert got == orjson.dumps({"event_name": text, "attributes": {text: text}})


def test_common_json_must_be_a_json_object() -> None:
    body = in_request(LogRecord(body=av("x")).SerializeToString())
    layout = _walk.scopes(body)
    assert layout is not None
    _, _, _, start, end = layout[0]
    for bad in (b"", b"[]", "{}", b"{"):
        with pytest.raises(TypeError, match="common_json"):
            _walk.records(body, start, end, {}, 0, level_of, orjson.dumps, bad)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_decoded_chunks_carry_the_fields_as_json(cfg: dict[str, Any]) -> None:
    """The chunks of a walked request hold each record's fields as the bytes of the Python walk's
    dict (or that dict), as EncodedFields; asked for as dicts, they are the Python walk's."""
    rng = random.Random(7)
    as_bytes = as_dicts = 0
    for _ in range(200):
        body = rand_request(rng)
        chunks, _ = decoder(**cfg).decode(body, PROTOBUF)
        groups: dict[int, Group] = {}
        decoder(**cfg)._protobuf(body, groups, [])
        expected = chunks_of(groups.values())
        assert [c.lines for c in chunks] == [c.lines for c in expected]
        for got, want in zip(chunks, expected, strict=True):
            cols = got.meta_columns
            if want.meta is None:
                assert cols is None and got.meta is None
                continue
            assert isinstance(cols, EncodedFields)
            assert cols.members == FIELD_MEMBERS
            for item, fields in zip(cols.encoded(), want.meta, strict=True):
                if isinstance(item, bytes):
                    as_bytes += 1
                    assert item == orjson.dumps(fields)
                elif item is not None:
                    as_dicts += 1
                    assert orjson.dumps(item) == orjson.dumps(fields)
                else:
                    assert fields is None
            assert orjson.dumps(got.meta) == orjson.dumps(want.meta)  # made from the JSON
            assert got.meta_columns is None
    assert as_bytes > 500 and as_dicts > 10


def test_a_resource_attribute_json_cannot_carry_keeps_dicts() -> None:
    rl = ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord(body=av("x"))])])
    rl.resource.attributes.append(kv("ratio", float("nan")))
    body = ExportLogsServiceRequest(resource_logs=[rl]).SerializeToString()
    chunks, _ = decoder().decode(body, PROTOBUF)
    cols = chunks[0].meta_columns
    assert isinstance(cols, EncodedFields)
    (item,) = cols.encoded()
    assert isinstance(item, dict) and item["resource"]["ratio"] != item["resource"]["ratio"]  # NaN kept
