"""The C hot path (``_speedups.c``) gives exactly what the Python code gives, on every kind of line."""

from __future__ import annotations

import random
import string
from typing import Any

import orjson
import pytest

from log_capturer import _speedups
from log_capturer.processing import Analyzer
from log_capturer.processing.levels import CANONICAL, NUMERIC
from log_capturer.record import Chunk, Origin
from log_capturer.sinks.kafka import encode as encode_mod

EDGE_LINES = [
    "",
    "{",
    "}",
    "{}",
    "{} ",
    "{}x",
    "[1,2]",
    '{"level":"info","tenant_id":"acme","msg":"ok"}',
    '{"level":"INFO","tenant_id":"acme"}',
    '{"level":" Warning ","tenant_id":"acme"}',
    '{"level":"nope","tenant_id":"acme"}',
    '{"level":"","tenant_id":""}',
    '{"level":30,"tenant_id":"acme"}',
    '{"level":35}',
    '{"level":-10}',
    '{"level":30.0}',
    '{"level":true}',
    '{"level":null}',
    '{"level":{"name":"error"}}',
    '{"level":["error"]}',
    '{"severity":"ERROR","lvl":"debug"}',
    '{"lvl":"debug","level":"error"}',
    '{"log.level":"warn"}',
    '{"loglevel":"crit"}',
    '{"levelname":"CRITICAL"}',
    '{"level":"info","level":"error"}',
    '{"level":"error","level":7}',
    '{"lev\\u0065l":"error"}',
    '{"level":"err\\u006fr"}',
    '{"level":"info","tenant_id":"ac\\"me"}',
    '{"level":"info","tenant_id":"a\\ud83d\\ude00"}',
    '{"level":"info","msg":"\\ud800"}',
    '{"level":"info","msg":"\\u00e9t\\u00e9"}',
    '{"level":"info","tenant_id":42}',
    '{"level":"info","tenant_id":-0}',
    '{"level":"info","tenant_id":4.5}',
    '{"level":"info","tenant_id":1e3}',
    '{"level":"info","tenant_id":true}',
    '{"level":"info","tenant_id":false}',
    '{"level":"info","tenant_id":null}',
    '{"level":"info","tenant_id":{"a":1}}',
    '{"level":"info","tenant_id":[1]}',
    '{"level":"info","n":123456789012345678901234567890}',
    '{"level":"info","n":01}',
    '{"level":"info","n":1.}',
    '{"level":"info","n":.5}',
    '{"level":"info","n":-}',
    '{"level":"info","n":1e}',
    '{"level":"info","n":NaN}',
    '{"level":"info","n":tru}',
    '{"level":"info",}',
    '{"level":"info" "x":1}',
    '{"level":"info"',
    '{"level":"info\t"}',
    '{"level":"info","x":"\x01"}',
    '{"level":"info","x":"\\x"}',
    '{"level":"info","x":"\\u12"}',
    '{ "level" : "warn" , "tenant_id" : "acme" }\n',
    '{"level":"info","deep":' + "[" * 70 + "]" * 70 + "}",
    '{"level":"info","deep":' + "[" * 10 + "]" * 10 + "}",
    '{"level":"info","msg":"caf\u00e9"}',
    '{"level":"info","msg":"\U0001f600"}',
    '{"level":"error","msg":"line \\n two \\" quote \\\\ slash \\/ x"}',
    "ERROR something failed tenant_id=acme",
    'level=warn tenant_id="big corp" msg=hello',
    "2026-12-03 12:00:00 [INFO] started",
    "W1203 12:00:00.000 1 main.go:1] careful",
    "plain line without level",
    "{not json} ERROR",
    "\x00\x01 binary ERROR",
]
#: Invalid UTF-8 (lone bytes, truncated sequences, a UTF-8-encoded surrogate, an overlong form)
#: in each place of JSON, logfmt and plain-text lines, decoded as the file source decodes it.
INVALID = [b"\xff", b"\x80", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xc0\xaf"]
INVALID_LINES = [
    b'{"level":"info","tenant_id":"acme","msg":"a%sb"}',
    b'{"level":"info","tenant_id":"ac%sme"}',
    b'{"level":"err%sor","tenant_id":"acme"}',
    b'{"level":"%s","tenant_id":"%s"}',
    b'{"m%s":1,"level":"warn","tenant_id":"acme"}',
    b'{"level":"warn","tenant_id":"acme","x":{"y":["%s"]}}',
    b'{"level":"warn","tenant_id":"acme","x":"\\\\%s%s\\"\\\\"}',
    b'{"level":"warn",%s"tenant_id":"acme"}',
    b'{"level":"warn","tenant_id":"acme"}%s',
    b'%s{"level":"warn","tenant_id":"acme"}',
    b'{"level":"warn","tenant_id":"acme","n":1%s}',
    b"level=warn tenant_id=ac%sme msg=x",
    b'level=warn msg="%s" tenant_id="acme"',
    b"%sERROR failed tenant_id=acme",
    b"E%s1125 12:00:00 x",
    b"plain %s text",
]
for _bad in INVALID:
    for _raw in INVALID_LINES:
        for _mode in ("backslashreplace", "replace"):
            EDGE_LINES.append(_raw.replace(b"%s", _bad).decode("utf-8", _mode))
EDGE_LINES += [
    '{"level":"info","tenant_id":"acme","msg":"\\ud800"}',
    '{"level":"info","tenant_id":"a\\uDFFFb"}',
    '{"level":"info","tenant_id":"acme","msg":"\\ude00\\ud83d"}',
    '{"level":"info","tenant_id":"acme","msg":"\\xff\\x41"}',
    '{"level":"info","tenant_id":"acme","msg":"\\xFF"}',
    '{"level":"info","tenant_id":"acme","msg":"\\x7f"}',
    '{"level":"info","tenant_id":"acme","msg":"\\xf"}',
    '{"level":"info","tenant_id":"acme","msg":"\\xff',
    '{"level":"info","tenant_id":"acme","msg":"\\xff"} \\xff',
    '{"level":"info","tenant_id":"acme","msg":"\\udcff a lone surrogate, decoded"}',
    '{"level":"x","tenant_id":"acme\\u00e9\\xff"}',
]
#: Lone surrogates in the text itself: no source decodes to them, but they must not break the scan.
SURROGATE_LINES = [
    '{"level":"info","tenant_id":"acme","msg":"\udcff a lone surrogate"}',
    "\udcff ERROR a lone surrogate tenant_id=acme",
]


def _analyze_both(lines: list[str], key_field: str | None, labels: dict[str, str] | None = None) -> None:
    analyzer = Analyzer(key_field)
    origin = Origin("file", "/var/log/x.log", labels or {})
    chunk = Chunk(origin, list(lines))
    analyzer.analyze(chunk)  # with _speedups
    want_key = key_field is not None and key_field not in origin.labels
    levels, keys = analyzer._analyze_lines(list(lines), want_key)  # the Python code alone
    for i, line in enumerate(lines):
        assert chunk.levels[i] == levels[i], (line, chunk.levels[i], levels[i])
        if keys is None:
            assert chunk.keys is None
        else:
            assert chunk.keys is not None
            assert chunk.keys[i] == keys[i], (line, chunk.keys[i], keys[i])
            assert type(chunk.keys[i]) is type(keys[i]), line


@pytest.mark.parametrize("key_field", [None, "tenant_id", "level", "msg"])
def test_levels_and_keys_match_the_python_code_on_edge_cases(key_field: str | None) -> None:
    _analyze_both(EDGE_LINES + SURROGATE_LINES, key_field)


def test_a_key_given_as_a_label_leaves_keys_to_the_label() -> None:
    _analyze_both(EDGE_LINES, "tenant_id", {"tenant_id": "from-label"})


def _mutations(rng: random.Random, line: str) -> list[str]:
    out = [line[: rng.randrange(len(line) + 1)]]
    for _ in range(3):
        i = rng.randrange(len(line))
        out.append(line[:i] + rng.choice(string.printable + "\u00e9") + line[i + 1 :])
        out.append(line[:i] + line[i + 1 :])
    return out


def test_levels_and_keys_match_the_python_code_on_random_json_and_broken_json() -> None:
    rng = random.Random(20261203)
    levels = [
        "info",
        "INFO",
        "warn",
        "Error",
        "fatal",
        "critical",
        "debug",
        "trace",
        "x",
        10,
        30,
        60,
        7,
        None,
    ]
    lines: list[str] = []
    for i in range(3000):
        doc: dict[str, object] = {
            "seq": i,
            "msg": "".join(rng.choices(string.printable, k=rng.randrange(40))),
        }
        if rng.random() < 0.9:
            doc[rng.choice(["level", "severity", "lvl", "levelname"])] = rng.choice(levels)
        if rng.random() < 0.8:
            doc["tenant_id"] = rng.choice(["acme", "globex", "initech", "", 5, True, None, [1], {"a": "b"}])
        if rng.random() < 0.2:
            doc["nested"] = {"level": "error", "list": [1, 2.5, "three", None, False]}
        line = orjson.dumps(doc).decode()
        if rng.random() < 0.1:
            line = line.replace(":", " : ").replace(",", " ,\t")
        lines.append(line)
        lines.extend(_mutations(rng, line))
    _analyze_both(lines, "tenant_id")
    _analyze_both(lines, None)


def test_levels_and_keys_match_the_python_code_on_random_lines_with_invalid_bytes() -> None:
    rng = random.Random(20261206)
    # Invalid sequences, lone surrogates as JSON escapes, and what can sit next to them.
    inserts = [*INVALID, b"\\ud800", b"\\uDC00", b"\\ud83d\\ude00", b"\\\\", b'\\"', b"\\x", b"\xc3\xa9"]
    lines: list[str] = []
    for i in range(3000):
        doc: dict[str, object] = {
            "seq": i,
            "msg": "".join(rng.choices(string.ascii_letters + " ", k=rng.randrange(30))),
            rng.choice(["level", "severity", "lvl"]): rng.choice(["info", "ERROR", "warn", 30, "x"]),
            "tenant_id": rng.choice(["acme", "globex", ""]),
        }
        raw = orjson.dumps(doc)
        if rng.random() < 0.2:
            raw = b"level=warn tenant_id=acme msg=" + raw
        for _ in range(rng.choice([1, 1, 2])):
            at = rng.randrange(len(raw) + 1)
            raw = raw[:at] + rng.choice(inserts) + raw[at:]
        lines.append(raw.decode("utf-8", rng.choice(["backslashreplace", "replace"])))
    _analyze_both(lines, "tenant_id")
    _analyze_both(lines, "msg")


def test_the_c_scanner_reads_strings_a_word_at_a_time_as_the_python_code_reads_them() -> None:
    """Each byte the string scanner stops at (a quote, a backslash escape, a raw control byte that
    makes the line invalid) at every place of an 8-byte word, in a member's name and value, before
    and after the level and the key."""
    lines: list[str] = []
    for k in range(20):
        for piece in ('\\"', "\\\\", "\\n", "\\u00e9", "\x01", "\t", '"'):
            text = "a" * k + piece + "b" * (19 - k)
            lines.append(f'{{"msg":"{text}","level":"warn","tenant_id":"acme"}}')
            lines.append(f'{{"level":"error","tenant_id":"t{k}","{text}":1}}')
            lines.append(f'{{"tenant_id":"{text}","level":"info"}}')
            lines.append(f'{{"level":"{text}"}}')
    _analyze_both(lines, "tenant_id")
    _analyze_both(lines, None)
    # The valid lines stay in C (the first of each four: the escape in a value not looked at).
    valid = [line for i, line in enumerate(lines[::4]) if i % 7 < 4]  # the four escapes
    levels, keys = _speedups.json_levels(valid, "tenant_id", CANONICAL, NUMERIC)
    assert len(valid) == 80
    assert levels == ["warn"] * len(valid)
    assert keys == ["acme"] * len(valid)


def test_tally_takes_ascii_lines_as_their_own_bytes_and_all_ascii_tells_them() -> None:
    lines = ["a" * n for n in (0, 10, 200, 5000)]
    topics = ["t1", "t2", "t1", "t2"]
    bounds = (64.0, 1024.0)
    encoded = [s.encode() for s in lines]
    assert _speedups.tally(topics, lines, bounds) == _speedups.tally(topics, encoded, bounds)
    assert _speedups.all_ascii(lines) and _speedups.all_ascii([])
    assert not _speedups.all_ascii([*lines, "caf\u00e9"])
    assert not _speedups.all_ascii([b"bytes"])
    with pytest.raises(TypeError, match="bytes or ASCII str"):
        _speedups.tally(["t"], ["caf\u00e9"], bounds)


def test_lookup_each_is_a_dict_lookup_per_item() -> None:
    topic_of = {"info": "logs-normal", "error": "logs-high", "debug": "logs-low"}
    levels = ["info", "info", "error", "info", "debug", "debug", "error"]
    levels.append("".join(["in", "fo"]))  # equal to "info", another object
    assert _speedups.lookup_each(levels, topic_of) == [topic_of[lv] for lv in levels]
    assert _speedups.lookup_each([], topic_of) == []
    with pytest.raises(KeyError, match="nope"):
        _speedups.lookup_each(["info", "nope"], topic_of)
    with pytest.raises(TypeError):
        _speedups.lookup_each(("info",), topic_of)  # type: ignore[arg-type]


def test_the_c_scanner_decides_lines_with_an_invalid_byte_outside_the_level_and_the_key() -> None:
    """Such lines stay on the fast path; those it leaves to Python are the ones it must."""
    lines = [
        b'{"level":"error","tenant_id":"acme","msg":"caf\xe9 \xff"}',
        b'{"level":"error","tenant_id":"acme","msg":"\\\\\xff\\\\"}',
        b'{"level":"error","tenant_id":"acme","m\xff":"x"}',
        b'{"level":"error","tenant_id":"ac\xffme"}',
        b'{"level":"err\xffor","tenant_id":"acme"}',
    ]
    text = [raw.decode("utf-8", "backslashreplace") for raw in lines]
    levels, keys = _speedups.json_levels(text, "tenant_id", CANONICAL, NUMERIC)
    assert levels == ["error", "error", None, None, None]
    assert keys == ["acme", "acme", None, None, None]


@pytest.mark.parametrize("keyed", [False, True])
def test_records_are_byte_for_byte_what_the_python_encoder_writes(
    keyed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    lines = [*EDGE_LINES, "".join(chr(c) for c in range(128)), "tab\there", "\u2028"]
    lines += ["".join(rng.choices(string.printable, k=rng.randrange(200))) for _ in range(500)]
    # Each kind of escaped byte at every place of an 8-byte word (the C code reads words).
    lines += ["a" * k + ch + "b" * (19 - k) for k in range(20) for ch in '"\\\x01\n\x1f']
    lines.append("\udcff a lone surrogate")
    origin = Origin("file", "/var/log/\u00e9.log", {"env": "prod"})
    analyzer = Analyzer("tenant_id" if keyed else None)

    def chunk() -> Chunk:
        c = Chunk(origin, list(lines), read_time_ns=1_764_000_000_123_456_789)
        analyzer.analyze(c)
        return c

    c1 = chunk()
    if keyed:
        assert c1.keys is not None and any(k is not None for k in c1.keys)
    key_field = "tenant_id" if keyed else None
    try:
        fast = encode_mod.encode_chunk(c1, key_field)
    except TypeError:  # orjson refuses lone surrogates
        fast = None
    monkeypatch.setattr(encode_mod, "_speedups", None)
    try:
        slow = encode_mod.encode_chunk(chunk(), key_field)
    except TypeError:  # orjson refuses lone surrogates
        slow = None
    assert fast == slow
    assert fast is None  # the lone surrogate: orjson refuses it, and so does the C path
    lines.pop()
    monkeypatch.setattr(encode_mod, "_speedups", _speedups)
    fast = encode_mod.encode_chunk(chunk(), key_field)
    monkeypatch.setattr(encode_mod, "_speedups", None)
    slow = encode_mod.encode_chunk(chunk(), key_field)
    assert fast == slow
    keys = chunk().keys
    for i, rec in enumerate(fast):
        doc = orjson.loads(rec)  # valid JSON, and valid UTF-8 (orjson checks it)
        assert doc["message"] == lines[i]  # the line as decoded: invalid bytes as \xNN or U+FFFD
        if keys is not None and keys[i] is not None:
            assert doc["fields"] == {"tenant_id": keys[i]}


def test_tally_counts_records_bytes_and_size_buckets_as_the_python_code_does() -> None:
    rng = random.Random(3)
    bounds = (64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 1048576.0)
    # Equal topic names that are different objects must land in one row.
    names = ["logs", "logs-high", "".join(["lo", "gs"])]
    topics = [rng.choice(names) for _ in range(3000)]
    sizes = [0, 1, 63, 64, 65, 128, 129, 512, 513, 4096, 1 << 20, (1 << 20) + 1, 5 << 20]
    values = [b"x" * rng.choice(sizes) for _ in topics]
    fast = _speedups.tally(topics, values, bounds)
    assert fast == encode_mod.tally_py(topics, values, bounds)
    rows, longest = fast
    assert sorted(rows) == ["logs", "logs-high"] and longest == 5 << 20
    assert sum(r[0] for r in rows.values()) == 3000
    assert sum(r[1] for r in rows.values()) == sum(map(len, values))
    assert _speedups.tally([], [], bounds) == ({}, 0)
    with pytest.raises(ValueError):
        _speedups.tally(["a"], [], bounds)


UTC_STAMPS = [
    "2026-12-01T10:00:00.123456789Z",
    "2026-12-01T10:00:00Z",
    "2026-12-01T10:00:00.5Z",
    "2024-02-29T23:59:59.000000001Z",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999999999Z",
    "1678-01-01T00:00:00Z",
    "2261-12-31T23:59:59.999999999Z",
    "2000-02-29T12:00:00.1Z",
]
NOT_UTC_STAMPS = [
    "2023-02-29T10:00:00Z",  # no such day
    "1900-02-29T10:00:00Z",
    "2026-13-01T10:00:00Z",
    "2026-12-00T10:00:00Z",
    "2026-12-01T24:00:00Z",
    "2026-12-01T10:60:00Z",
    "2026-12-01T10:00:60Z",  # a leap second: Python decides
    "2026-12-01T10:00:00.Z",
    "2026-12-01T10:00:00.1234567890Z",
    "2026-12-01 10:00:00Z",
    "2026-12-01T10:00:00+00:00",
    "2026-12-01T10:00:00.12a4Z",
    "2026-12-01T10:00:00.\uff11Z",  # a digit, not ASCII
    "1677-12-31T23:59:59Z",  # outside an int64 of ns
    "2262-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2026-W48-1T10:00:00Z",
    "1700000000",
    "",
    1_700_000_000_000,
    None,
]


def test_utc_stamps_match_time_ns_and_leave_every_other_shape_to_it() -> None:
    from log_capturer.sources.http.source import time_ns

    assert _speedups.utc_stamps(UTC_STAMPS) == [time_ns(v) for v in UTC_STAMPS]
    rng = random.Random(7)
    stamps = [
        f"{rng.randint(1678, 2261):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        + (f".{rng.randint(0, 10**9 - 1):09d}"[: rng.randint(2, 10)] if rng.random() < 0.8 else "")
        + "Z"
        for _ in range(2000)
    ]
    assert _speedups.utc_stamps(stamps) == [time_ns(v) for v in stamps]
    for bad in NOT_UTC_STAMPS:
        assert _speedups.utc_stamps([UTC_STAMPS[0], bad]) is None, bad
    assert _speedups.utc_stamps([]) == []
    with pytest.raises(TypeError):
        _speedups.utc_stamps(tuple(UTC_STAMPS))  # type: ignore[arg-type]


def _scan_ref(values: list[bytes], keys: tuple[str, ...], m: int, t: int, lv: int) -> Any:
    """What agent_scan must give, read with orjson (None where it declines)."""
    recs = [orjson.loads(v) for v in values]
    first = recs[0]
    texts = [keys[i] for i in (m, t, lv) if i >= 0]
    for r in recs:
        if list(r) != list(keys) or any(type(r[k]) is not str for k in texts):
            return None
        if any(orjson.dumps(r[k]) != orjson.dumps(first[k]) for k in keys if k not in texts):
            return None
    return (
        [r[keys[m]] for r in recs],
        [r[keys[t]] for r in recs] if t >= 0 else None,
        [r[keys[lv]] for r in recs] if lv >= 0 else None,
    )


AGENT_KEYS = ("timestamp", "message", "level", "source_type", "source_id", "labels", "fields")


def _agent_value(i: int, message: str, **over: Any) -> bytes:
    rec: dict[str, Any] = {
        "timestamp": f"2026-12-01T10:00:{i % 60:02d}.{i:09d}Z",
        "message": message,
        "level": ("info", "warn", "")[i % 3],
        "source_type": "file",
        "source_id": "/var/log/a.log",
        "labels": {"app": "shop", "n": [1, 2.5, None, True, {"x": "y \\" + '"'}]},
        "fields": {},
    }
    rec.update(over)
    return orjson.dumps(rec)


def test_agent_scan_reads_the_texts_of_uniform_records_as_orjson_does() -> None:
    rng = random.Random(11)
    alphabet = string.printable.replace("\x0b", "") + '\b\fé€😀"\\/'  # no \\u escape
    messages = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(300)]
    values = [_agent_value(i, m) for i, m in enumerate(messages)]
    assert _speedups.agent_scan(values, AGENT_KEYS, 1, 0, 2) == _scan_ref(values, AGENT_KEYS, 1, 0, 2)
    # Times and levels that are not read must be the same bytes in every record.
    assert _speedups.agent_scan(values, AGENT_KEYS, 1, -1, -1) is None
    same = [_agent_value(0, m) for m in messages]
    assert _speedups.agent_scan(same, AGENT_KEYS, 1, -1, -1) == (messages, None, None)
    # Whitespace between the tokens, as another writer puts it.
    spaced = [orjson.dumps(orjson.loads(v), option=orjson.OPT_INDENT_2) for v in values[:20]]
    assert _speedups.agent_scan(spaced, AGENT_KEYS, 1, 0, 2) == _scan_ref(spaced, AGENT_KEYS, 1, 0, 2)


def test_agent_scan_declines_what_it_does_not_read_byte_for_byte() -> None:
    good = _agent_value(0, "ok")
    declined = {
        "labels differ": _agent_value(1, "x", labels={"app": "other"}),
        "fields differ": _agent_value(1, "x", fields={"user": "u"}),
        "a \\u escape": b'{"timestamp":"2026-12-01T10:00:00Z","message":"\\u00e9"'
        + good[good.index(b',"level"') :],
        "a message that is not text": _agent_value(1, 5),  # type: ignore[arg-type]
        "a level that is not text": _agent_value(1, "x", level=3),
        "members in another order": orjson.dumps({"message": "x", **orjson.loads(good)}),
        "a member more": _agent_value(1, "x", extra=1),
        "a member less": orjson.dumps({k: v for k, v in orjson.loads(good).items() if k != "fields"}),
        "not UTF-8": good.replace(b'"ok"', b'"\xff"'),
        "a control character": good.replace(b'"ok"', b'"a\x01"'),
        "something after the object": good + b"x",
        "not closed": good[:-1],
        "cut in a string": good[: good.index(b"ok") + 1],
        "an escaped member name": good.replace(b'"level"', b'"lev\\u0065l"'),
        "not bytes": "text",
        "an array": b"[1]",
    }
    for name, value in declined.items():
        assert _speedups.agent_scan([good, value], AGENT_KEYS, 1, 0, 2) is None, name  # type: ignore[list-item]
    assert _speedups.agent_scan([], AGENT_KEYS, 1, 0, 2) is None
    assert _speedups.agent_scan([good], AGENT_KEYS, 7, 0, 2) is None  # no such member
    with pytest.raises(TypeError):
        _speedups.agent_scan((good,), AGENT_KEYS, 1, 0, 2)  # type: ignore[arg-type]


# -- forward_columns on bytes from the network ---------------------------------------------------
_FC_KEYS = (("log", "message"), ("level", "severity"), frozenset({"fields", "time"}), {"info": "info"}, 256)


def _fc_messages() -> list[bytes]:
    import struct

    import msgpack

    def et(i: int) -> msgpack.ExtType:
        return msgpack.ExtType(0, struct.pack(">II", 1_764_000_000, i))

    out = []
    for n in (1, 3, 20):
        records = [
            {"log": f"line {i} é", "level": "info", "labels": {"t": f"t{i % 2}"}, "x": [1, {"a": None}]}
            for i in range(n)
        ]
        entries = [[et(i), rec] for i, rec in enumerate(records)]
        out.append(msgpack.packb(["app", entries, {"chunk": "c"}]))
        out.append(msgpack.packb(["app", b"".join(msgpack.packb(e) for e in entries)]))
    return out


def test_forward_columns_declines_an_extension_inside_a_record() -> None:
    """An EventTime (or any extension) inside a record's member is not plain: the message is left
    to the decoder (it once made an EventTime of no class: a crash). Here a changed header makes
    the next entry's time part of a member's value."""
    import msgpack

    time = msgpack.ExtType(0, bytes(8))
    good = msgpack.packb(["app", [[time, {"log": "a", "x": [1]}]]])
    assert _speedups.forward_columns(good, *_FC_KEYS) is not None
    inside = msgpack.packb(["app", [[time, {"log": "a", "x": time}]]])
    assert _speedups.forward_columns(inside, *_FC_KEYS) is None
    packed = _fc_messages()[3]  # PackedForward, 3 entries
    swallowing = packed.replace(b"\xa1x\x92\x01", b"\xa1x\x98\x01", 1)  # an array of 8 takes the next entry
    assert _speedups.forward_columns(swallowing, *_FC_KEYS) is None


def test_forward_columns_takes_any_bytes_without_failing() -> None:
    """Messages with bytes changed, cut, inserted or deleted: each is read, or left to the decoder
    (None); never an exception, never a crash (the bytes come from the network)."""
    rng = random.Random(11)
    base = _fc_messages()
    taken = 0
    for _ in range(30_000):
        data = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            if op < 0.4 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op < 0.6:
                del data[rng.randrange(len(data) + 1) :]
            elif op < 0.8:
                data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
            elif data:
                del data[rng.randrange(len(data))]
        got = _speedups.forward_columns(bytes(data), *_FC_KEYS)
        taken += got is not None
    assert taken > 100  # some changes leave a message that is still read
