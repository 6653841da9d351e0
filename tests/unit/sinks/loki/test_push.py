"""Records into Loki entries, and the push bodies (protobuf read back by a small decoder here)."""

from __future__ import annotations

import gc
import gzip
import random
import string
import time
from typing import Any

import cramjam
import orjson
import pytest
from pydantic import ValidationError

from log_capturer.engine.contract import Record
from log_capturer.record import Chunk, Origin
from log_capturer.sinks.encoding import logfmt_value
from log_capturer.sinks.kafka.encode import encode_chunk
from log_capturer.sinks.loki import push as push_mod
from log_capturer.sinks.loki.config import LokiSinkConfig
from log_capturer.sinks.loki.push import (
    OVERFLOW_LABEL,
    Entry,
    LazyValues,
    Shaper,
    encode,
    group,
    label_name,
    labels_text,
    parse_timestamp,
)


def records(lines: list[str], labels: dict[str, str] | None = None, level: str = "info") -> list[Record]:
    chunk = Chunk(Origin("file", "/var/log/app.log", labels or {}), lines, start=0, end=len(lines))
    chunk.levels = [level] * len(lines)
    return [Record("dest", v, None) for v in encode_chunk(chunk, None)]


def config(**kw: Any) -> LokiSinkConfig:
    return LokiSinkConfig.model_validate({"enabled": True, **kw})


# -- a protobuf reader, enough for PushRequest --------------------------------------------------
def _varint(b: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return n, i


def fields(b: bytes) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
            out.append((num, v))
        else:
            assert wire == 2, wire
            n, i = _varint(b, i)
            out.append((num, b[i : i + n]))
            i += n
    return out


def decode_push(raw: bytes) -> list[tuple[str, list[tuple[int, bytes, list[tuple[str, str]]]]]]:
    streams = []
    for num, stream in fields(raw):
        assert num == 1
        labels = ""
        entries = []
        for n2, v in fields(stream):
            if n2 == 1:
                labels = v.decode()
            elif n2 == 2:
                ts = 0
                line = b""
                meta = []
                for n3, v3 in fields(v):
                    if n3 == 1:
                        parts = dict(fields(v3))
                        ts = parts.get(1, 0) * 1_000_000_000 + parts.get(2, 0)
                    elif n3 == 2:
                        line = v3
                    elif n3 == 3:
                        pair = dict(fields(v3))
                        meta.append((pair[1].decode(), pair[2].decode()))
                entries.append((ts, line, meta))
        streams.append((labels, entries))
    return streams


def test_labels_text_is_sorted_and_escaped() -> None:
    assert labels_text({"b": "2", "a": 'say "hi"\\\n'}) == '{a="say \\"hi\\"\\\\\\n", b="2"}'
    assert label_name("app.kubernetes.io/name") == "app_kubernetes_io_name"
    assert label_name("1st") == "_1st"


def test_parse_timestamp_reads_rfc3339_nanoseconds() -> None:
    assert parse_timestamp(b"1970-01-01T00:00:01.000000002Z") == 1_000_000_002
    assert parse_timestamp(b"2026-01-02T03:04:05.5Z") % 1_000_000_000 == 500_000_000
    assert parse_timestamp(b"2026-01-02T03:04:05Z") % 1_000_000_000 == 0


def test_default_entry_labels_line_and_timestamp() -> None:
    shaper = Shaper(config())
    chunk = Chunk(Origin("file", "/var/log/app.log", {"app": "web"}), ["hello"], start=0, end=1)
    chunk.levels = ["error"]
    recs = [Record("dest", v, None) for v in encode_chunk(chunk, None)]
    entries, refused = shaper.entries(chunk, [r.value for r in recs])
    assert not refused
    (e,) = entries
    assert e.stream == (
        '{app="web", job="log-capturer", level="error", source_id="/var/log/app.log", source_type="file"}'
    )
    doc = orjson.loads(e.line)
    assert "timestamp" not in doc and doc["message"] == "hello"
    assert e.ts == chunk.read_time_ns


def test_line_formats_and_structured_metadata() -> None:
    (rec,) = records(["a b"], {"team": "ops"})
    kv = Shaper(config(line_format="key_value")).entry_of(rec)
    assert kv.line.decode().startswith('message="a b" level=info source_type=file')
    assert "labels.team=ops" in kv.line.decode()
    msg = Shaper(config(line_format="message", structured_metadata=["labels.team", "level"])).entry_of(rec)
    assert msg.line == b"a b"
    assert msg.meta == (("labels_team", "ops"), ("level", "info"))
    js = Shaper(config(structured_metadata=["labels.team"])).entry_of(rec)
    assert orjson.loads(js.line)["labels"] == {} and js.meta == (("labels_team", "ops"),)
    # key_value is encoding.codec: logfmt: the same line, the shared logfmt writer's.
    assert Shaper(config(encoding={"codec": "logfmt"})).entry_of(rec).line == kv.line
    assert logfmt_value("") == b'""' and logfmt_value("x=y") == b'"x=y"'


@pytest.mark.parametrize(
    ("kw", "line"),
    [
        ({"encoding": {"codec": "raw"}}, b"a b"),
        ({"line_format": "message", "encoding": {"codec": "raw"}}, b"a b"),
        (
            {"encoding": {"only_fields": ["message", "labels.team"]}},
            b'{"message":"a b","labels":{"team":"ops"}}',
        ),
        (
            {"line_format": "key_value", "encoding": {"except_fields": ["source_id", "labels", "fields"]}},
            b'message="a b" level=info source_type=file',
        ),
        (
            {
                "encoding": {
                    "codec": "logfmt",
                    "only_fields": ["timestamp", "level"],
                    "timestamp_format": "unix_ms",
                }
            },
            b"timestamp=<ms> level=info",
        ),
    ],
)
def test_the_line_is_made_by_the_encoding_block(kw: dict[str, Any], line: bytes) -> None:
    (rec,) = records(["a b"], {"team": "ops"})
    entry = Shaper(config(**kw)).entry_of(rec)
    assert entry.line == line.replace(b"<ms>", b"%d" % (entry.ts // 1_000_000))


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        (
            {"line_format": "message", "encoding": {"codec": "json"}},
            "line_format: message and encoding.codec: json disagree",
        ),
        (
            {"line_format": "message", "encoding": {"except_fields": ["labels"]}},
            "encoding.except_fields does not apply to codec: raw",
        ),
        ({"encoding": "xml"}, "encoding: 'xml' is neither a push body"),
        (
            {"encoding": "json", "push_format": "protobuf"},
            "encoding: json and push_format: protobuf disagree",
        ),
    ],
)
def test_conflicting_line_choices_name_both_keys(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as err:
        LokiSinkConfig.model_validate(kw)
    assert says in str(err.value)


def test_the_string_encoding_is_the_push_body() -> None:
    assert LokiSinkConfig.model_validate({"encoding": "json"}).push_format == "json"
    assert LokiSinkConfig().push_format == "protobuf" and LokiSinkConfig().line_encoding.envelope


def test_tenant_from_a_field_else_the_fixed_one() -> None:
    shaper = Shaper(config(tenant_id="7", tenant_field="labels.tenant"))
    assert shaper.entry_of(records(["x"], {"tenant": "42"})[0]).tenant == "42"
    assert shaper.entry_of(records(["x"])[0]).tenant == "7"


def test_max_streams_sends_new_label_sets_under_the_overflow_stream() -> None:
    shaper = Shaper(config(max_streams=2, source_labels=True))
    streams = [shaper.entry_of(records(["x"], {"pod": f"p{i}"})[0]).stream for i in range(4)]
    assert len(set(streams[:2])) == 2
    assert streams[2] == streams[3] == shaper.overflow_stream
    assert f'{OVERFLOW_LABEL}="true"' in shaper.overflow_stream
    assert shaper.overflowed == 2 and shaper.streams() == 2
    # A known stream still goes to its own.
    assert shaper.entry_of(records(["y"], {"pod": "p0"})[0]).stream == streams[0]


def test_too_large_and_too_old_are_refused_before_sending_or_clamped() -> None:
    chunk = Chunk(Origin("file", "/a"), ["x" * 5000, "old"], start=0, end=2)
    chunk.levels = ["", ""]
    chunk.timestamps = [time.time_ns(), time.time_ns() - 10 * 86400 * 10**9]
    recs = [Record("dest", v, None) for v in encode_chunk(chunk, None)]
    entries, refused = Shaper(config(max_request_size=2048)).entries(chunk, [r.value for r in recs])
    assert [r.reason for r in refused] == ["too_large", "timestamp_too_old"]
    assert "max_request_size=2048" in refused[0].text and "timestamp too old" in refused[1].text
    assert not entries
    clamped, refused = Shaper(config(timestamp_learning={"clamp_enabled": True})).entries(
        chunk, [r.value for r in recs]
    )
    assert not refused and len(clamped) == 2
    assert clamped[1].rewritten and time.time_ns() - clamped[1].ts < 10**10


def test_protobuf_body_groups_streams_and_sorts_entries_by_time() -> None:
    shaper = Shaper(config(structured_metadata=["level"]))
    recs = records(["first", "second"]) + records(["other"], {"app": "x"})
    entries = [shaper.entry_of(r) for r in recs]
    entries[0].ts, entries[1].ts = 2_000_000_001, 1_000_000_005
    body, headers, raw_size = encode(entries, shaper.config, shaper)
    assert headers == {"Content-Type": "application/x-protobuf"}
    raw = bytes(cramjam.snappy.decompress_raw(body))
    assert len(raw) == raw_size
    streams = decode_push(raw)
    assert [s[0] for s in streams] == [entries[0].stream, entries[2].stream]
    first = streams[0][1]
    assert [ts for ts, _l, _m in first] == [1_000_000_005, 2_000_000_001]
    assert [orjson.loads(line)["message"] for _t, line, _m in first] == ["second", "first"]
    assert first[0][2] == [("level", "info")]
    assert [e.ts for e in group(entries)[entries[0].stream]] == [1_000_000_005, 2_000_000_001]


def test_json_body_gzip() -> None:
    shaper = Shaper(config(push_format="json"))
    entries = [shaper.entry_of(r) for r in records(["a"], {"app": "x"})]
    body, headers, _ = encode(entries, shaper.config, shaper)
    assert headers["Content-Encoding"] == "gzip"
    doc = orjson.loads(gzip.decompress(body))
    (stream,) = doc["streams"]
    assert stream["stream"]["app"] == "x"
    assert stream["values"][0][0] == str(entries[0].ts)
    assert orjson.loads(stream["values"][0][1])["message"] == "a"


def test_message_lines_from_the_chunk_are_those_of_the_record() -> None:
    chunk = Chunk(Origin("file", "/a", {"app": "x"}), ['{"a": 1}', "plain é"], start=0, end=2)
    chunk.levels = ["info", "error"]
    values = encode_chunk(chunk, None)
    shaper = Shaper(config(line_format="message"))
    fast, refused = shaper.entries(chunk, values)
    slow = [shaper.entry_of(Record("dest", v, None)) for v in values]
    assert not refused
    assert [(e.line, e.stream, e.ts) for e in fast] == [(e.line, e.stream, e.ts) for e in slow]
    assert [e.line for e in fast] == [b'{"a": 1}', "plain é".encode()]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"line_format": "message"},
        {"encoding": {"codec": "logfmt", "except_fields": ["labels.env"]}},
        {"encoding": {"only_fields": ["message", "fields"], "timestamp_format": "unix_ms"}},
        {"encoding": {"codec": "raw"}, "structured_metadata": ["labels.env"]},
    ],
)
def test_a_parked_record_is_sent_again_as_the_same_entry(kw: dict[str, Any]) -> None:
    """The DLQ keeps the record (its JSON envelope); the entry made from it again has the very
    line, metadata, stream and time the chunk's entry had."""
    chunk = Chunk(Origin("file", "/a", {"env": "prod"}), ["one x=1", "two é"], start=0, end=2)
    chunk.levels = ["info", "error"]
    chunk.keys = ["t1", None]
    values = encode_chunk(chunk, "tenant_id")
    shaper = Shaper(config(**kw))
    entries, refused = shaper.entries(chunk, values)
    assert not refused
    again = [shaper.entry_of(e.record) for e in entries]
    assert [(e.line, e.meta, e.stream, e.ts) for e in again] == [
        (e.line, e.meta, e.stream, e.ts) for e in entries
    ]


# -- the C module against the Python reference -----------------------------------------------------
def _edge_lines(rng: random.Random) -> list[str]:
    """Lines of every kind a source hands over: empty, non-ASCII, undecodable bytes (as the file
    source's backslashreplace and surrogateescape give them), quotes and escapes, huge ones."""
    fixed = [
        "",
        " ",
        "plain",
        '{"level":"info","msg":"say \\"hi\\""}',
        'quote " backslash \\ newline \n tab \t',
        "caf\u00e9 \u65e5\u672c \U0001f600",
        b"\xff\xfe bad bytes".decode("utf-8", "backslashreplace"),
        b"\xff\xfe bad bytes".decode("utf-8", "surrogateescape"),
        "\udcff lone surrogate at the start",
        "\x00\x01 control",
        "x" * 16383,
        "y" * 16384,
        "z" * 200_000,
        "\u00e9" * 70_000,
    ]
    alphabet = string.printable + '\u00e9\u4e2d\U0001f600\udc80"\\'
    rand = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 300))) for _ in range(400)]
    return fixed + rand


def _chunk(lines: list[str], rng: random.Random, stamped: bool, labels: dict[str, str]) -> Chunk:
    chunk = Chunk(Origin("file", '/var/log/"quoted"\\app.log', labels), lines, start=0, end=len(lines))
    chunk.levels = [rng.choice(["info", "warn", "error", "debug"]) for _ in lines]
    if stamped:
        chunk.timestamps = [
            rng.choice([0, 1, 999_999_999, 1_000_000_000, 2**62]) + rng.randrange(10**18) for _ in lines
        ]
    return chunk


def _attrs(e: Entry) -> tuple[Any, ...]:
    return tuple(getattr(e, name) for name in Entry.__slots__)


@pytest.mark.parametrize("line_format", ["message", "json"])
@pytest.mark.parametrize("stamped", [False, True])
def test_c_entries_and_body_are_those_of_the_python_reference(
    line_format: str, stamped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(f"{line_format}{stamped}")
    labels = {"app": 'we"b', "team": "back\\slash", "nl": "a\nb", "uni": "\u00e9t\u00e9"}
    shaper = Shaper(config(line_format=line_format, default_labels={"job": 'j"ob'}))
    chunk = _chunk(_edge_lines(rng), rng, stamped, labels)
    # The records (opaque bytes here) of the lines with their lone surrogates replaced, which the
    # record encoder refuses; the lines themselves keep them.
    twin = Chunk(chunk.origin, [ln.encode("utf-8", "replace").decode() for ln in chunk.lines])
    twin.levels, twin.timestamps, twin.read_time_ns = chunk.levels, chunk.timestamps, chunk.read_time_ns
    values = encode_chunk(twin, None)
    streams: dict[str, tuple[str, str]] = {
        lvl: (labels_text({"level": lvl, **labels}), rng.choice(["", "tenant-1"]))
        for lvl in set(chunk.levels)
    }
    fast = push_mod._speedups.loki_entries(
        Entry,
        values,
        chunk.lines if line_format == "message" else None,
        chunk.timestamps,
        chunk.read_time_ns,
        chunk.levels,
        streams,
        "dest",
    )
    ref = shaper._fast_lines_py(chunk, values, streams, "dest")
    assert len(fast) == len(ref) == len(chunk.lines)
    assert [_attrs(e) for e in fast] == [_attrs(e) for e in ref]
    assert all(type(e) is Entry for e in fast)
    # Out of the cyclic collector (freed by their reference counts): its walks over the waiting
    # entries were a large share of the agent's time per line.
    assert not any(gc.is_tracked(e) for e in fast)
    # Through the shaper (which picks the C code), the entries it makes without the C module.
    got, refused = shaper.entries(chunk, values)
    with monkeypatch.context() as mp:
        mp.setattr(push_mod, "_speedups", None)
        want, refused_py = shaper.entries(chunk, values)
    assert [_attrs(e) for e in got] == [_attrs(e) for e in want]
    assert [(r.record, r.reason) for r in refused] == [(r.record, r.reason) for r in refused_py]
    assert len(got) + len(refused) == len(values) and (stamped or not refused)
    # Entries with structured metadata (the slow path) among them: the same bodies, which decode
    # to every entry's timestamp, line and metadata.
    meta_shaper = Shaper(config(line_format="message", structured_metadata=["labels.app", "level"]))
    with_meta = [meta_shaper.entry_of(Record("dest", v, None)) for v in values[:50]]
    grouped = group(ref + with_meta)
    body = push_mod.protobuf_body(grouped)
    assert body == push_mod.protobuf_body_py(grouped)
    decoded = decode_push(body)
    assert sum(len(es) for _l, es in decoded) == len(ref) + len(with_meta)
    assert {(ts, line) for _l, es in decoded for ts, line, _m in es} == {
        (e.ts, e.line) for e in ref + with_meta
    }
    assert ("labels_app", 'we"b') in {m for _l, es in decoded for _t, _ln, ms in es for m in ms}


@pytest.mark.parametrize("stamped", [False, True])
def test_lazy_entries_make_their_records_only_when_asked(
    stamped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(f"lazy{stamped}")
    shaper = Shaper(config(line_format="message", default_labels={"job": "j"}))
    assert shaper.lazy_values
    lines = [ln.encode("utf-8", "replace").decode() for ln in _edge_lines(rng)]
    chunk = _chunk(lines, rng, stamped, {"app": "web"})
    values = encode_chunk(chunk, None)
    lazy = LazyValues(chunk, None)
    got, refused = shaper.entries(chunk, lazy)
    assert (lazy._values is None) == (not refused)  # encoded for the refused records only
    assert refused or not stamped
    with monkeypatch.context() as mp:
        mp.setattr(push_mod, "_speedups", None)
        lazy_py = LazyValues(chunk, None)
        want, refused_py = shaper.entries(chunk, lazy_py)
    eager, refused_eager = shaper.entries(chunk, values)
    assert all(e.lazy for e in got + want) and not any(e.lazy for e in eager)
    # The same entries as with the records made first, but for the record each holds.
    same = [n for n in Entry.__slots__ if n not in ("_value", "index")]
    for a, b, c in zip(got, want, eager, strict=True):
        assert [getattr(a, n) for n in same] == [getattr(b, n) for n in same] == [getattr(c, n) for n in same]
        assert a.index == b.index
    assert not any(gc.is_tracked(e) for e in got)
    assert [r.reason for r in refused] == [r.reason for r in refused_py] == [r.reason for r in refused_eager]
    # Asked for (parked, sent again, refused): the records, encoded once for the chunk.
    assert [e.record for e in got] == [e.record for e in eager]
    assert [r.record for r in refused] == [r.record for r in refused_eager]
    assert [e.value for e in want] == [e.value for e in eager]
    assert lazy._values is not None and len(lazy) == len(chunk.lines)
    encoded = lazy._values
    _ = got[0].value
    assert lazy._values is encoded
    # Not the lines: the records are made first (the shaper reads them).
    json_shaper = Shaper(config(line_format="json", default_labels={"job": "j"}))
    assert not json_shaper.lazy_values
    plain, _r = json_shaper.entries(chunk, LazyValues(chunk, None))
    assert not any(e.lazy for e in plain)
    with pytest.raises(TypeError):
        push_mod._speedups.loki_entries(Entry, lazy, None, None, 1, chunk.levels, {}, "d")


def test_lazy_records_of_text_the_record_encoder_refuses_never_raise() -> None:
    shaper = Shaper(config(line_format="message", default_labels={"job": "j"}))
    chunk = Chunk(Origin("file", "/a.log"), ["\udcff undecodable", "ok"], start=0, end=2)
    chunk.levels = ["info", "info"]
    with pytest.raises(TypeError):
        encode_chunk(chunk, None)  # orjson refuses lone surrogates
    got, refused = shaper.entries(chunk, LazyValues(chunk, None))
    assert not refused and [e.line for e in got] == [b"\\udcff undecodable", b"ok"]
    records = [orjson.loads(e.record.value) for e in got]
    assert [r["message"] for r in records] == ["\\udcff undecodable", "ok"]
    assert records[0]["source_id"] == "/a.log"
    # Refused in the fields too: the line and its origin.
    chunk.meta = [{"f": "\udcff"}, None]
    chunk.timestamps = [time.time_ns(), time.time_ns()]
    got, _r = shaper.entries(chunk, LazyValues(chunk, None))
    assert [orjson.loads(e.record.value) for e in got] == [
        {"message": "\\udcff undecodable", "source_type": "file", "source_id": "/a.log"},
        {"message": "ok", "source_type": "file", "source_id": "/a.log"},
    ]


def test_c_body_of_nothing_and_of_empty_streams() -> None:
    for streams in ({}, {'{a="1"}': []}):
        assert push_mod.protobuf_body(streams) == push_mod.protobuf_body_py(streams)


def test_c_code_refuses_what_is_not_an_entry() -> None:
    class Other:
        __slots__ = ("ts",)

    with pytest.raises(TypeError):
        push_mod._speedups.loki_protobuf(Entry, {"{}": [object()]})
    with pytest.raises(TypeError):
        push_mod._speedups.loki_protobuf(Other, {"{}": []})
    e = Entry(b"v", "d", -5, b"line", "{}", "")
    with pytest.raises(ValueError):
        push_mod._speedups.loki_protobuf(Entry, {"{}": [e]})
    with pytest.raises(KeyError):
        push_mod._speedups.loki_entries(Entry, [b"v"], ["l"], None, 1, ["info"], {}, "d")
    with pytest.raises(ValueError):
        push_mod._speedups.loki_entries(Entry, [b"v"], [], None, 1, ["info"], {"info": ("{}", "")}, "d")
