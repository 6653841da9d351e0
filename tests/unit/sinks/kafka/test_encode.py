from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from log_capturer.processing import Analyzer
from log_capturer.processing.timestamps import NS
from log_capturer.record import Chunk, EncodedFields, KafkaMeta, Origin
from log_capturer.sinks.encoding import rfc3339_ns
from log_capturer.sinks.kafka import encode
from log_capturer.sinks.kafka.encode import _speedups, encode_chunk, encode_chunk_py


def test_records_are_valid_json_with_the_documented_fields() -> None:
    lines = ['{"level":"error","tenant_id":"t1"}', 'quote " backslash \\ tab \t', "ctrl \x01 \u2603"]
    chunk = Chunk(
        Origin("file", "/var/log/a.log", {"env": "prod"}), lines, read_time_ns=1_700_000_000_123_456_789
    )
    Analyzer("tenant_id").analyze(chunk)
    chunk.truncated = frozenset({2})
    recs = [orjson.loads(v) for v in encode_chunk(chunk, "tenant_id")]
    assert [r["message"] for r in recs] == lines
    assert recs[0] == {
        "timestamp": "2023-11-14T22:13:20.123456789Z",
        "message": lines[0],
        "level": "error",
        "source_type": "file",
        "source_id": "/var/log/a.log",
        "labels": {"env": "prod"},
        "fields": {"tenant_id": "t1"},
    }
    assert recs[1]["fields"] == {} and "truncated" not in recs[1]
    assert recs[2]["truncated"] is True


def test_fast_path_without_keys() -> None:
    chunk = Chunk(Origin("file", "/a"), ["INFO a", "b"])
    Analyzer(None).analyze(chunk)
    recs = [orjson.loads(v) for v in encode_chunk(chunk, None)]
    assert [(r["level"], r["fields"]) for r in recs] == [("info", {}), ("", {})]


def test_meta_fields_merge_with_the_key() -> None:
    chunk = Chunk(Origin("docker", "abc"), ["x"], meta=[{"stream": "stderr"}])
    chunk.levels, chunk.keys = [""], ["k"]
    rec = orjson.loads(encode_chunk(chunk, "tenant_id")[0])
    assert rec["fields"] == {"stream": "stderr", "tenant_id": "k"}


def test_rfc3339_nanoseconds() -> None:
    assert rfc3339_ns(5) == "1970-01-01T00:00:00.000000005Z"


def test_keyed_fast_path_matches_the_general_path() -> None:
    """Keys only (the usual JSON file) takes a shortcut; its records equal the general path's."""
    lines = ['{"level":"info","tenant_id":"t1"}', '{"tenant_id":"t\\"2"}', "plain", '{"tenant_id":"t1"}']
    chunk = Chunk(Origin("file", "/a.log", {"env": "x"}), lines, read_time_ns=1_700_000_000_000_000_001)
    Analyzer("tenant_id").analyze(chunk)
    fast = encode_chunk(chunk, "tenant_id")
    chunk.timestamps = [chunk.read_time_ns] * len(lines)  # forces the general path, same content
    general = encode_chunk(chunk, "tenant_id")
    assert fast == general
    assert [orjson.loads(v)["fields"] for v in fast] == [
        {"tenant_id": "t1"},
        {"tenant_id": 't"2'},
        {},
        {"tenant_id": "t1"},
    ]


def test_thousands_of_keys_give_the_python_bytes_and_the_key_table_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each key's fields object comes from a table kept between chunks (C); the records equal the
    Python encoder's for ASCII keys with quotes, backslashes and control characters, non-ASCII
    keys and missing ones, on both keyed paths, and a full table is replaced."""
    monkeypatch.setattr(encode, "KEY_CACHE_SIZE", 500)
    monkeypatch.setattr(encode, "_key_tables", {})
    odd = ['q"uote', "back\\slash", "tab\tnl\n", "ctl\x01", "\u00e9t\u00e9", "\u2603", ""]
    for first in range(0, 3000, 1000):
        keys: list[str | None] = [f"tenant-{(first + i) * 7919 % 2000:05d}" for i in range(1000)]
        keys[::97] = [None] * len(keys[::97])
        keys[5 : 5 + len(odd)] = odd
        lines = [f"line {first + i}" for i in range(len(keys))]
        chunk = Chunk(Origin("file", "/a.log"), lines, read_time_ns=1_700_000_000_000_000_001)
        chunk.levels, chunk.keys = ["info"] * len(lines), keys
        head = b'{"timestamp":"' + rfc3339_ns(chunk.read_time_ns).encode() + b'","message":'
        tails = {"info": b',"level":"info",' + chunk.origin.encoded + b',"fields":'}
        fast = encode_chunk(chunk, "tenant_id")
        chunk.timestamps = [chunk.read_time_ns] * len(lines)
        full = encode_chunk(chunk, "tenant_id")
        assert fast == full == encode_chunk_py(chunk, "tenant_id", head, tails)
        fields = [orjson.loads(v)["fields"] for v in fast]
        assert fields == [{} if k is None else {"tenant_id": k} for k in keys]
    assert all(len(t) <= 500 + 1000 for t in encode._key_tables.values())


def test_the_c_escaping_matches_orjson_at_every_position_of_long_lines() -> None:
    """Quotes, backslashes and control characters before, inside and after each 8- and 16-byte
    step of the C scanner, on lines up to 70 bytes and one of 64 KiB."""
    rng = random.Random(11)
    alphabet = ["a", "b", '"', "\\", "\n", "\t", "\x01", "\x1f", " ", "\x7f", "~"]
    lines = ["".join(rng.choice(alphabet) for _ in range(n)) for n in range(71) for _ in range(20)]
    lines.append("".join(rng.choice(alphabet) for _ in range(65536)))
    for keys in (None, [f"k{i % 7}" for i in range(len(lines))]):
        chunk = Chunk(Origin("file", "/a.log"), lines, read_time_ns=1_700_000_000_000_000_001)
        chunk.levels, chunk.keys = [""] * len(lines), keys
        recs = encode_chunk(chunk, "tenant_id")
        assert [orjson.loads(v)["message"] for v in recs] == lines
        head = b'{"timestamp":"' + rfc3339_ns(chunk.read_time_ns).encode() + b'","message":'
        tails = {"": b',"level":"",' + chunk.origin.encoded + b',"fields":'}
        chunk.timestamps = [chunk.read_time_ns] * len(lines)
        assert recs == encode_chunk_py(chunk, "tenant_id", head, tails)


def test_event_times_are_formatted_like_rfc3339_ns() -> None:
    """Each second is formatted once per chunk; every record's time is still its own."""
    stamps = [1_764_000_000 * 10**9 + i * 333_333_333 for i in range(7)] + [5, -1_500_000_000]
    chunk = Chunk(Origin("forward", "x"), [f"line {i}" for i in range(len(stamps))])
    chunk.levels = ["info"] * len(stamps)
    chunk.timestamps = stamps
    got = [orjson.loads(v)["timestamp"] for v in encode_chunk(chunk, None)]
    assert got == [rfc3339_ns(ns) for ns in stamps]


def test_preset_levels_without_a_key_are_taken_as_they_are() -> None:
    chunk = Chunk(Origin("forward", "x", {"tenant_id": "a"}), ['{"level":"error"}', "plain warn"])
    chunk.preset_levels = ["info", "debug"]
    Analyzer("tenant_id").analyze(chunk)
    assert (chunk.levels, chunk.keys) == (["info", "debug"], None)
    chunk.preset_levels = ["info", None]  # one to detect: line by line
    Analyzer("tenant_id").analyze(chunk)
    assert chunk.levels == ["info", "warn"]


def test_keys_without_a_key_field_leave_the_fields_empty_on_every_path() -> None:
    """A chunk can carry keys the sink does not put in ``fields`` (no ``key_field``): every path
    still writes valid JSON, with empty fields."""
    chunk = Chunk(Origin("file", "/a.log"), ["one", "two"], read_time_ns=1_700_000_000_000_000_001)
    chunk.levels, chunk.keys = ["", ""], ["k1", None]
    plain = [orjson.loads(v) for v in encode_chunk(chunk, None)]
    chunk.truncated = frozenset({1})  # the general path
    general = [orjson.loads(v) for v in encode_chunk(chunk, None)]
    assert [r["fields"] for r in plain] == [r["fields"] for r in general] == [{}, {}]
    assert [r.get("truncated") for r in general] == [None, True]


_EDGE_TIMES = [
    0,
    5,
    -1,
    -1_000_000_005,
    951_782_400_000_000_000,  # 2000-02-29
    1_700_000_000_123_456_789,
    4_107_542_400_000_000_007,  # 2100-03-01
    253_402_300_799_999_999_999,  # 9999-12-31T23:59:59.999999999
    253_402_300_800_000_000_000,  # year 10000: Python formats it
    2**70,
]
_EDGE_LINES = ["plain", 'caf\xe9 "q"\n\x01', "x" * 200_000, '{"a":1}', "\U0001f600 emoji\t", "a\\b/c"]


def _random_chunk(rnd: random.Random, n: int) -> Chunk:
    chunk = Chunk(
        Origin("forward", "forward://127.0.0.1", {"tag": "app"}),
        [rnd.choice(_EDGE_LINES) for _ in range(n)],
        read_time_ns=1_700_000_000_123_456_789,
    )
    chunk.levels = [rnd.choice(["", "info", "error"]) for _ in range(n)]
    if rnd.random() < 0.5:
        chunk.keys = [rnd.choice([None, "t1", "t\xe92"]) for _ in range(n)]
    if rnd.random() < 0.5:
        metas: list[dict[str, object] | None] = [
            None,
            {},
            {"a": [1, {"b": None}]},
            {"k": "v", "tenant_id": "z"},
        ]
        chunk.meta = [rnd.choice(metas) for _ in range(n)]
    if rnd.random() < 0.5:
        chunk.truncated = frozenset(rnd.sample(range(n), n // 3))
    if rnd.random() < 0.8:
        chunk.timestamps = [
            rnd.choice([*_EDGE_TIMES, 1_700_000_000 * NS + rnd.randrange(NS)]) for _ in range(n)
        ]
    return chunk


def test_the_c_encoder_of_timed_records_gives_the_python_bytes() -> None:
    """``_speedups.encode_full`` (event times, fields, truncation) against ``encode_chunk_py``,
    on random chunks: distinct and equal times, times outside 1970-9999, non-ASCII and huge lines,
    nested fields merged with the key."""
    assert _speedups is not None
    rnd = random.Random(24)
    compared = 0
    for _ in range(400):
        chunk = _random_chunk(rnd, rnd.randrange(0, 25))
        for key_field in ("tenant_id", None, ""):
            head = b'{"timestamp":"' + rfc3339_ns(chunk.read_time_ns).encode() + b'","message":'
            tails = {
                lvl: b',"level":"' + lvl.encode() + b'",' + chunk.origin.encoded + b',"fields":'
                for lvl in set(chunk.levels)
            }
            expected = encode_chunk_py(chunk, key_field, head, tails)
            assert encode_chunk(chunk, key_field) == expected
            compared += len(expected)
    assert compared > 5000


def test_the_c_encoder_fails_like_python_on_a_lone_surrogate() -> None:
    chunk = Chunk(Origin("forward", "f"), ["ok", "bad \udcff"], read_time_ns=0)
    chunk.levels = ["", ""]
    chunk.timestamps = [1, 2]
    with pytest.raises(TypeError):
        encode_chunk(chunk, None)
    with pytest.raises(TypeError):
        encode_chunk_py(chunk, None, b"", {"": b""})


def test_fields_already_encoded_give_the_bytes_of_their_dicts_with_the_key_spliced_in() -> None:
    """Chunks whose fields are columns of JSON objects (``EncodedFields``: the OTLP input's) encode
    to the bytes their dicts give, the key added as the last member; also a Kafka source's
    metadata with a key, and a key_field JSON must escape."""
    assert _speedups is not None
    rnd = random.Random(25)
    metas: list[dict[str, Any] | None] = [
        None,
        {},
        {"a": [1, {"b": None}]},
        {"resource": {"service.name": "x\u00e9"}, "attributes": {"k": 'q"uo\\te', "n": 1.5}},
        {"t": "\x01\n"},
    ]
    compared = 0
    for _ in range(300):
        n = rnd.randrange(0, 25)
        base = _random_chunk(rnd, n)
        picked = [rnd.choice(metas) for _ in range(n)]
        # As the source makes them: JSON, or the dict itself (what JSON would not carry), or None.
        items: list[bytes | dict[str, Any] | None] = [
            None if m is None else m if rnd.random() < 0.2 else orjson.dumps(m) for m in picked
        ]
        for key_field in ("tenant_id", 'te"n\\ant', None, ""):
            with_cols = _copy(base)
            with_cols.meta_columns = EncodedFields(
                list(items), frozenset(("a", "resource", "attributes", "t"))
            )
            with_dicts = _copy(base)
            with_dicts.meta = [None if m is None else dict(m) for m in picked]
            head = b'{"timestamp":"' + rfc3339_ns(base.read_time_ns).encode() + b'","message":'
            tails = {
                lvl: b',"level":"' + lvl.encode() + b'",' + base.origin.encoded + b',"fields":'
                for lvl in set(base.levels)
            }
            got = encode_chunk(with_cols, key_field)
            assert with_cols.meta_columns is not None  # encoded as they were, no dict made
            assert got == encode_chunk_py(with_dicts, key_field, head, tails)
            for rec in got:
                orjson.loads(rec)
            compared += len(got)
    assert compared > 5000
    # The Kafka source's metadata with a key: spliced in as well.
    chunk = Chunk(Origin("kafka", "logs"), ["a", "b"], read_time_ns=1_700_000_000_000_000_000)
    chunk.levels = ["info", "info"]
    chunk.keys = ["t1", None]
    chunk.meta_columns = KafkaMeta("kafka", "logs", 0, [5, 6], [None, "k"], [None, 9])
    dicts = KafkaMeta("kafka", "logs", 0, [5, 6], [None, "k"], [None, 9]).dicts()
    recs = encode_chunk(chunk, "tenant_id")
    assert [orjson.loads(r)["fields"] for r in recs] == [{**dicts[0], "tenant_id": "t1"}, dicts[1]]
    assert chunk.meta_columns is not None


def test_a_key_field_that_is_a_member_of_the_encoded_fields_takes_the_dicts() -> None:
    chunk = Chunk(Origin("otlp", "otlp"), ["a"], read_time_ns=1_700_000_000_000_000_000)
    chunk.levels = ["info"]
    chunk.keys = ["from-fields"]
    chunk.meta_columns = EncodedFields([b'{"trace_id":"ab","x":1}'], frozenset(("trace_id", "x")))
    (rec,) = encode_chunk(chunk, "trace_id")
    assert orjson.loads(rec)["fields"] == {"trace_id": "from-fields", "x": 1}  # in its place
    assert chunk.meta_columns is None and chunk.meta == [{"trace_id": "ab", "x": 1}]


def _copy(chunk: Chunk) -> Chunk:
    out = Chunk(chunk.origin, list(chunk.lines), read_time_ns=chunk.read_time_ns)
    out.levels = list(chunk.levels)
    out.keys = None if chunk.keys is None else list(chunk.keys)
    out.truncated = chunk.truncated
    out.timestamps = None if chunk.timestamps is None else list(chunk.timestamps)
    return out
