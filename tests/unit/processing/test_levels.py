from __future__ import annotations

import random
from typing import Any, cast

import orjson
import pytest

from log_capturer import processing
from log_capturer.processing import Analyzer
from log_capturer.processing.levels import (
    detect_level,
    level_of_mapping,
    level_of_text,
    parse_json_object,
)
from log_capturer.record import Chunk, EncodedFields, Origin


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ('{"level":"WARNING","msg":"x"}', "warn"),
        ('{"severity":"Error"}', "error"),
        ('{"lvl":"dbg"}', "debug"),
        ('{"level":50,"msg":"pino"}', "error"),
        ('{"msg":"no level"}', ""),
        ('{"level": {"nested": 1}}', ""),
        ("ts=1 level=debug msg=hi", "debug"),
        ('ts=1 level="INFO" msg=hi', "info"),
        ("ts=1 severity=crit", "critical"),
        ("2024-01-01 12:00:00 ERROR boom", "error"),
        ("[WARN] disk", "warn"),
        ("[warn] lower case", "warn"),
        ("2024/01/01 00:00:00 [error] 123#0: x", "error"),
        ("ERROR:root:msg", "error"),
        ("INFO  [main] x", "info"),
        ("<Critical> z", "critical"),
        ("TRACE x", "trace"),
        ("Fatal: x", "fatal"),
        ("W1125 12:00:00.000 1 x.go:1] w", "warn"),
        ("E1125 12:00:00.000 1 x.go:1] e", "error"),
        ("E/ActivityManager: x", "error"),
        ("W 12:00:01 filling", "warn"),
        ("I am here", ""),
        ("hello world", ""),
        ("no errors here", ""),
        ("foo.error.bar", ""),
        ("{not json ERROR", "error"),
        ("x" * 200 + " ERROR late", ""),
        ("LEVEL=Warning msg=x", "warn"),
        ("seq=2 took=3ms WARN slow", "warn"),
        ("error-prone code ran, then Notice", "info"),
        ("x-error and y.error are names", ""),
        ("ERRORS were none", ""),
        ("12:00 [tenant-01] seq=2 Fatal", "fatal"),
    ],
)
def test_detect_level(line: str, level: str) -> None:
    assert detect_level(line) == level


def test_analyzer_levels_and_keys() -> None:
    chunk = Chunk(
        Origin("file", "/a.log"),
        [
            '{"level":"error","tenant_id":"t1"}',
            "level=info tenant_id=t2",
            'tenant_id="t 3" x',
            "plain",
            '{"tenant_id":7}',
        ],
    )
    Analyzer("tenant_id").analyze(chunk)
    assert chunk.levels == ["error", "info", "", "", ""]
    assert chunk.keys == ["t1", "t2", "t 3", None, "7"]


def test_analyzer_skips_keys_when_the_label_carries_them() -> None:
    chunk = Chunk(Origin("file", "/a.log", {"tenant_id": "acme"}), ['{"tenant_id":"t1"}'])
    Analyzer("tenant_id").analyze(chunk)
    assert chunk.keys is None


def test_analyzer_without_key_field() -> None:
    chunk = Chunk(Origin("file", "/a.log"), ["ERROR x"])
    Analyzer(None).analyze(chunk)
    assert chunk.levels == ["error"] and chunk.keys is None


def test_analyzer_fast_path_agrees_with_detect_level() -> None:
    """The analyzer's inlined JSON path gives what detect_level gives, line by line."""
    lines = [
        '{"level":"info","tenant_id":"a"}',
        '{"level":"INFO","tenant_id":"b"}',
        '{"level":" Warning ","tenant_id":1}',
        '{"level":null,"severity":"error"}',
        '{"level":30}',
        '{"level":true}',
        '{"level":"nonsense","tenant_id":{"x":1}}',
        '{"severity":"crit","tenant_id":[1]}',
        '{"levelname":"DEBUG","tenant_id":null}',
        '{"level":"fatal"',
        "[1,2]",
        "{} ERROR trailing",
        "level=warn tenant_id=c",
    ]
    chunk = Chunk(Origin("file", "/a.log"), lines)
    Analyzer("tenant_id").analyze(chunk)
    assert chunk.levels == [detect_level(line) for line in lines]
    assert chunk.keys == ["a", "b", "1", None, None, None, None, None, None, None, None, None, "c"]


# -- bytes that are not valid UTF-8 ------------------------------------------------------------
#: Invalid sequences: a byte that never starts one, a lone continuation byte, truncated 2-, 3-
#: and 4-byte sequences, an overlong '/', a UTF-8-encoded surrogate (CESU-8), a code point past
#: U+10FFFF.
INVALID = [
    b"\xff",
    b"\x80",
    b"\xc3",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
]
MODES = ["backslashreplace", "replace"]


def _analyze(raws: list[bytes], mode: str, path: str, monkeypatch: pytest.MonkeyPatch) -> Chunk:
    """The lines decoded as the file source decodes them (``encoding_errors: mode``), through
    the C scanner and its Python fallback ("c"), the Python code alone ("python"), or the path
    of chunks with per-line fields ("rich")."""
    if path == "python":
        monkeypatch.setattr(processing, "_speedups", None)
    chunk = Chunk(Origin("file", "/a.log"), [raw.decode("utf-8", mode) for raw in raws])
    if path == "rich":
        chunk.meta = [None] * len(raws)
    Analyzer("tenant_id").analyze(chunk)
    return chunk


@pytest.mark.parametrize("path", ["c", "python", "rich"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bad", INVALID)
def test_an_invalid_byte_in_another_member_keeps_the_level_and_the_key(
    bad: bytes, mode: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The level member comes late: the plain-text guess (first 120 characters) cannot find it.
    pad = "x" * 130
    raws = [
        b'{"msg":"caf' + bad + b'","tenant_id":"acme","level":"error"}',
        b'{"msg":"' + pad.encode() + bad + b'","tenant_id":"acme","level":"warn"}',
        b'{"msg":"' + bad + b'","tenant_id":"acme","n":1,"ok":true,"x":null,"lvl":"debug"}',
        b'{"a":{"b":["' + bad + b'"]},"tenant_id":"acme","severity":"ERROR"}',
        b'{"m' + bad + b'":"member name","tenant_id":"acme","level":50}',
        b'{"msg":"\\\\' + bad + b'\\"","tenant_id":"acme","level":"info"}',  # after \\ and before \"
        b'{"msg":"' + bad * 3 + b'","msg2":"' + bad + b'","tenant_id":"acme","level":"fatal"}',
    ]
    chunk = _analyze(raws, mode, path, monkeypatch)
    assert chunk.levels == ["error", "warn", "debug", "error", "error", "info", "fatal"]
    assert chunk.keys == ["acme"] * len(raws)


@pytest.mark.parametrize("path", ["c", "python", "rich"])
@pytest.mark.parametrize("mode", MODES)
def test_a_key_with_an_invalid_byte_is_its_text_as_decoded_so_always_the_same_key(
    mode: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = [
        b'{"level":"info","tenant_id":"ac\xffme","msg":"one"}',
        b'{"msg":"two \xe2\x82","tenant_id":"ac\xffme","level":"warn"}',
        b'level=error tenant_id=ac\xffme msg="three"',
        b'{"level":"info","tenant_id":"\xc3"}',
    ]
    chunk = _analyze(raws, mode, path, monkeypatch)
    assert chunk.levels == ["info", "warn", "error", "info"]
    if mode == "backslashreplace":  # the escape's four characters, as in the shipped message
        assert chunk.keys == ["ac\\xffme", "ac\\xffme", "ac\\xffme", "\\xc3"]
    else:
        assert chunk.keys == ["ac\ufffdme", "ac\ufffdme", "ac\ufffdme", "\ufffd"]


@pytest.mark.parametrize("path", ["c", "python", "rich"])
@pytest.mark.parametrize("mode", MODES)
def test_an_invalid_byte_in_the_level_value_is_no_level_name_but_the_key_stays(
    mode: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = [
        b'{"level":"err\xffor","tenant_id":"acme"}',
        b'{"level":"\xffwarn","severity":"error","tenant_id":"acme"}',
    ]
    chunk = _analyze(raws, mode, path, monkeypatch)
    assert chunk.levels == ["", ""]
    assert chunk.keys == ["acme", "acme"]


@pytest.mark.parametrize("path", ["c", "python", "rich"])
def test_lone_surrogate_escapes_read_as_u_fffd(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    raws = [
        b'{"msg":"\\ud83d cut emoji","tenant_id":"acme","level":"error"}',
        b'{"msg":"\\uDC00\\ud800","tenant_id":"acme","level":"warn"}',
        b'{"msg":"pair \\ud83d\\ude00 kept","tenant_id":"a\\udfffb","level":"info"}',
        b'{"msg":"\\\\ud800 is text","tenant_id":"acme","level":"debug"}',
    ]
    chunk = _analyze(raws, "backslashreplace", path, monkeypatch)
    assert chunk.levels == ["error", "warn", "info", "debug"]
    assert chunk.keys == ["acme", "acme", "a\ufffdb", "acme"]


@pytest.mark.parametrize("path", ["c", "python", "rich"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bad", INVALID)
def test_invalid_bytes_in_logfmt_and_plain_text(
    bad: bytes, mode: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = [
        b"level=warn msg=" + bad + b" tenant_id=acme",
        b'ts=1 msg="' + bad + b'" lvl=error tenant_id="acme"',
        bad + b"ERROR" + bad + b" failed tenant_id=acme",
        b"2026-12-03 [" + bad + b"] [Warning] x",
        b"{" + bad + b' "level":"info"} not json, FATAL tenant_id=acme',
    ]
    chunk = _analyze(raws, mode, path, monkeypatch)
    assert chunk.levels == ["warn", "error", "error", "warn", "info"]
    assert chunk.keys == ["acme", "acme", "acme", None, "acme"]


def test_detect_level_of_json_with_an_invalid_byte() -> None:
    assert detect_level('{"msg":"' + "x" * 130 + '\\xff","level":"warn"}') == "warn"
    assert detect_level('{"msg":"\\ud800","level":"warn"}') == "warn"
    # Escapes that are not what backslashreplace writes stay invalid JSON: text detection.
    assert detect_level('{"msg":"\\x41","level":"warn"}') == "warn"
    assert detect_level('{"msg":"\\xFF ' + "x" * 130 + '","level":"warn"}') == ""
    assert parse_json_object('{"msg":"\\x41","level":"warn"}') is None
    assert parse_json_object('{"msg":"\\xff" "level":"warn"}') is None
    assert parse_json_object('{"msg":"a\\xffb"}') == {"msg": "a\\xffb"}


# -- chunks with preset levels or fields (HTTP ingest, forward, OTLP) ---------------------------
def _rich_reference(analyzer: Analyzer, chunk: Chunk) -> tuple[list[str], list[str | None] | None]:
    """The rich path as it was, line by line in Python: what the batch version must give."""
    kf = analyzer.key_field
    want_key = kf is not None and kf not in chunk.origin.labels
    preset, meta = chunk.preset_levels, chunk.meta
    levels: list[str] = []
    keys: list[str | None] | None = [] if want_key else None
    for i, line in enumerate(chunk.lines):
        level = preset[i] if preset is not None else None
        key: str | None = None
        found_key = False
        if keys is not None and meta is not None:
            fields = meta[i]
            if fields and kf in fields:
                v = fields[kf]
                found_key = True
                key = None if v is None or isinstance(v, dict | list) else str(v)
        need_key = keys is not None and not found_key
        if level is None or need_key:
            obj = parse_json_object(line) if line[:1] == "{" else None
            if obj is not None:
                if level is None:
                    level = level_of_mapping(obj)
                if need_key and kf is not None:
                    v = obj.get(kf)
                    key = None if v is None or isinstance(v, dict | list) else str(v)
            else:
                if level is None:
                    level = level_of_text(line)
                if need_key:
                    key = analyzer._logfmt_value(line)
        levels.append(cast("str", level))
        if keys is not None:
            keys.append(key)
    return levels, keys


RICH_LINES = [
    '{"level":"info","tenant_id":"a","msg":"x"}',
    '{"level":"WARNING","tenant_id":7}',
    '{"severity":"error","tenant_id":{"x":1}}',
    '{"tenant_id":null}',
    '{"level":"nonsense"}',
    '{"level":"fatal"',
    "[1,2]",
    "level=warn tenant_id=c",
    "2024-01-01 ERROR boom",
    "plain text",
    '{"msg":"\\xff bad byte","tenant_id":"t\\xfe"}',
    "",
]
RICH_FIELDS: list[dict[str, Any] | None] = [
    None,
    {},
    {"tenant_id": "from-fields"},
    {"tenant_id": 3},
    {"tenant_id": None},
    {"tenant_id": [1]},
    {"trace_id": "abc"},
]


@pytest.mark.parametrize("key_field", ["tenant_id", None])
@pytest.mark.parametrize("labelled", [False, True])
@pytest.mark.parametrize("path", ["c", "python"])
def test_rich_chunks_read_as_line_by_line(
    key_field: str | None, labelled: bool, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Preset levels (some, none, all) and fields (with the key or not), in random mixes: the
    batch version of the rich path gives what reading line by line gave."""
    if path == "python":
        monkeypatch.setattr(processing, "_speedups", None)
    rng = random.Random(17)
    analyzer = Analyzer(key_field)
    labels = {"tenant_id": "lab"} if labelled else {}
    for _ in range(300):
        n = rng.randrange(1, 12)
        chunk = Chunk(Origin("otlp", "otlp", labels), [rng.choice(RICH_LINES) for _ in range(n)])
        mode = rng.randrange(4)
        if mode:
            chunk.preset_levels = [
                None if mode == 1 or (mode == 2 and rng.random() < 0.5) else rng.choice(["info", "error", ""])
                for _ in range(n)
            ]
        if rng.random() < 0.7 or chunk.preset_levels is None:
            chunk.meta = [rng.choice(RICH_FIELDS) for _ in range(n)]
        expected = _rich_reference(analyzer, chunk)
        analyzer.analyze(chunk)
        assert (chunk.levels, chunk.keys) == expected


@pytest.mark.parametrize("key_field", ["tenant_id", "trace_id", None])
def test_fields_as_json_columns_are_read_as_their_dicts_and_only_when_they_may_hold_the_key(
    key_field: str | None,
) -> None:
    """Fields given as JSON columns (``EncodedFields``, OTLP's): the same levels and keys as the
    same fields as dicts; no dict is made unless key_field may be one of their members."""
    rng = random.Random(18)
    analyzer = Analyzer(key_field)
    without_key = [f for f in RICH_FIELDS if not f or "tenant_id" not in f]
    for fields_pool, members in ((RICH_FIELDS, {"tenant_id", "trace_id"}), (without_key, {"trace_id"})):
        for _ in range(200):
            n = rng.randrange(1, 12)
            lines = [rng.choice(RICH_LINES) for _ in range(n)]
            preset = [rng.choice([None, "info", "error"]) for _ in range(n)] if rng.random() < 0.5 else None
            fields = [rng.choice(fields_pool) for _ in range(n)]
            as_dicts = Chunk(Origin("otlp", "otlp"), list(lines))
            as_dicts.preset_levels = preset
            as_dicts.meta = fields
            as_json = Chunk(Origin("otlp", "otlp"), list(lines))
            as_json.preset_levels = preset
            items: list[Any] = [None if f is None else orjson.dumps(f) for f in fields]
            as_json.meta_columns = EncodedFields(items, frozenset(members))
            expected = _rich_reference(analyzer, as_dicts)
            analyzer.analyze(as_json)
            assert (as_json.levels, as_json.keys) == expected
            if key_field not in members:
                assert as_json.meta_columns is not None  # left as JSON
            else:
                assert as_json.meta_columns is None and as_json.meta == fields


@pytest.mark.parametrize("path", ["c", "python", "rich"])
def test_a_json_line_cut_at_max_line_bytes_keeps_its_key_and_level(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JSON line cut at ``max_line_bytes`` is no JSON any more: its level is read as text, and
    its key from the ``"tenant_id": ...`` member wherever it stands, so the cut line goes to the
    partition of the tenant's other lines."""
    raws = [
        b'{"level":"error","tenant_id":"acme","msg":"' + b"x" * 300,
        b'{"tenant_id" : "a\\"b\\u00e9","level":"warn","msg":"cut',
        b'{"tenant_id":42,"msg":"cut',
        b'{"msg":"no key here","level":"info"',
        b'{"tenant_id":"acme"} and text after the object',
        b'{"msg":"cut before the key\\", \\"tenant_id\\": \\"x',
    ]
    chunk = _analyze(raws, "backslashreplace", path, monkeypatch)
    assert chunk.levels == ["error", "warn", "", "info", "", ""]
    assert chunk.keys == ["acme", 'a"b\u00e9', "42", None, "acme", None]


def _cut_json_lines(rng: random.Random, n: int) -> list[str]:
    """JSON-like lines cut anywhere: keys as strings (with escapes), numbers, empty, before or
    after the cut, in nested objects and arrays, inside other strings, with logfmt pairs."""
    parts = [
        '"tenant_id":"acme"',
        '"tenant_id" :\t"beta"',
        '"tenant_id": ""',
        '"tenant_id":-12.5e+3',
        '"tenant_id":-x',
        '"tenant_id":"a\\"b"',
        '"tenant_id" "no colon"',
        '"level":"error"',
        '"lvl":"WARN"',
        '"msg":"tenant_id=zed level=debug"',
        '"msg":"a \\"quoted\\" word and a \\\\ backslash"',
        '"msg":"ERROR at start"',
        '"n":[1,{"tenant_id":"deep"},"]"]',
        '"o":{"a":{"b":"}"}}',
        '"s":"{[not structure]}"',
        '"x":null',
    ]
    lines = []
    for _ in range(n):
        body = "{" + ",".join(rng.choice(parts) for _ in range(rng.randint(0, 6)))
        if rng.random() < 0.2:
            body += "}"
            if rng.random() < 0.5:
                body += " tail tenant_id=t1"
        lines.append(body[: rng.randint(1, len(body))] if rng.random() < 0.9 else body)
    return lines


@pytest.mark.parametrize("seed", range(5))
def test_cut_json_lines_read_in_c_as_in_python(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines that start like JSON and end inside an object, an array or a string (cut at
    max_line_bytes) are decided in C (their level as text's, their key as a member's, else as a
    logfmt pair's) with the Python code's results, whatever is cut where."""
    lines = _cut_json_lines(random.Random(seed), 3000)
    analyzer = Analyzer("tenant_id")
    c_levels, c_keys = analyzer._levels_and_keys(list(lines), True)
    monkeypatch.setattr(processing, "_speedups", None)
    py_levels, py_keys = analyzer._analyze_lines(list(lines), True)
    assert c_levels == py_levels
    assert c_keys == py_keys


def test_cut_json_lines_are_decided_in_c() -> None:
    """A cut JSON line goes no further than C (no orjson, no regular expressions in Python);
    one whose key has an escape, or that is whole, is left to Python."""
    from log_capturer import _speedups

    lines = [
        '{"level":"error","tenant_id":"acme","msg":"' + "x" * 300,
        '{"msg":"ERROR cut inside [an array',
        '{"tenant_id":7,"a":[1,{"b":',
        '{"tenant_id":"a\\"b","msg":"cut',
        '{"tenant_id":"whole"} text after',
    ]
    levels: list[str | None] = [None] * len(lines)
    keys: list[str | None] = [None] * len(lines)
    left = _speedups.text_levels(lines, levels, keys, "tenant_id", processing.CANONICAL)
    assert left == 2
    assert levels[:3] == ["error", "error", ""]
    assert keys[:3] == ["acme", None, "7"]
    assert levels[3:] == [None, None]
