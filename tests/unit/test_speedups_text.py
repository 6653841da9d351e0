"""``_speedups.text_levels`` (plain-text and logfmt lines in C) gives exactly what the Python code
gives: ``levels.level_of_text`` and ``Analyzer._logfmt_value``, line by line."""

from __future__ import annotations

import random

import pytest

from log_capturer import _speedups
from log_capturer.devtools.generate import POOL_SIZE, LineFactory
from log_capturer.processing import Analyzer
from log_capturer.processing.levels import CANONICAL, level_of_text
from log_capturer.record import Chunk, Origin

EMIT_NS = 1_764_054_000_123_456_000

EDGE_LINES = [
    "",
    " ",
    "=",
    "ERROR",
    "error",
    "Error: boom",
    "2026-11-25T07:00:00.123456Z INFO [main] started tenant_id=acme",
    "2026-11-25 07:00:00,123 WARN  c.e.Foo - slow tenant_id=acme",
    "Nov 25 07:00:00 host app[12]: <err> disk full",
    "Nov 25 07:00:00 host app[12]: [Warning] disk almost full",
    "[2026-11-25 07:00:00] production.CRITICAL: boom",
    "07:00:00.123 level:debug tick",
    "no level here, user session request handled",
    "request handled in 3 ms, then an error occurred",  # the level word inside the message
    "the information desk said: fine",  # 'information' and 'fine' are level names
    "informational",
    "errors: 3",  # not a whole word
    "error-prone code",  # followed by '-': not a word
    "pre-error code",  # after '-': not a word
    "x.error y",  # after '.': not a word
    "error.",  # followed by '.': a word
    "error_code=5",
    "error5 warn",
    "5error warn",
    "_error warn",
    "ERROR\tWARN",
    "a" * 119 + " error",  # the word starts beyond the head
    "a" * 113 + " error",  # the word ends at character 119: inside the head
    "a" * 114 + " errors",  # cut by the head: 'error' at its end counts
    "a" * 200 + " WARN",
    "level=info msg=x",
    "LEVEL=INFO msg=x",
    "Level=Warning msg=x",
    'level="error" msg=x',
    'level=""error msg=x',
    "level=123 lvl=debug",
    "level= info",
    "xlevel=info then WARN",
    "time=1 level=bogus msg=ERROR",  # the logfmt level decides, even when unknown
    "time=1 severity=crit",
    "time=1 SEVERITY=Emergency",
    "time=1 lvl=dbg",
    "a=b c=d ERROR e=f",
    "msg=level=info WARN",
    "\tlevel=warn",
    "\x1clevel=warn",  # Python's \s includes 0x1c-0x1f
    "\x1c tenant_id=x1c",
    "\x1ftenant_id=after-unit-separator",
    "x\x0blevel=error",
    "W1125 07:00:00.123456 12 main.go:1] glog warning",
    "E1125T07:00:00 glog error",
    "I1125x no",
    "E/Tag: logcat error",
    "W  5 logcat",
    "W\t\t5 logcat",
    "W x5 no",
    "F/",
    "V",
    "D 1",
    "D\x1c1 prefix after 0x1c",
    # invalid bytes decoded with backslashreplace
    "\\xffERROR a word after an invalid byte",
    "x\\xffERROR",
    "\\\\xffERROR",
    "\\x7fERROR not an invalid byte's escape",
    "\\xFFERROR upper-case hex is not what backslashreplace writes",
    "\\xf ERROR",
    "a" * 116 + "\\xffERROR",
    "a" * 110 + "\\xff\\xfe\\xfdERROR and more",
    "E\\xff 5",
    "W\\x80\\x815 letter prefix through escapes",
    "tenant_id=\\xffacme level=warn",
    # logfmt keys
    "tenant_id=acme",
    "tenant_id=",
    "tenant_id= acme",
    'tenant_id="acme corp" level=info',
    'tenant_id="" level=info',
    'tenant_id="unterminated level=info',
    'tenant_id="a"b',
    "tenant_id=a=b",
    "xtenant_id=no tenant_id=yes",
    "tenant_id tenant_id=second",
    "tenant_id=first tenant_id=second",
    "tenant_id==x",
    "=tenant_id=x",
    "a=tenant_id=x tenant_id=y",
    "a=b=c x a=b=d",
    "TENANT_ID=upper",
    "msg=tenant_id=inner",
    'msg="x tenant_id=inside-quotes"',
    "line\nwith tenant_id=multi\n\tat com.x.Y(Y.java:1) ERROR",
    "2026-11-25T07:00:00Z ERROR boom\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)",
    'tenant_id="multi\nline"',
]
#: Lines C leaves to Python: non-ASCII, or starting with '{'.
PYTHON_LINES = [
    "é ERROR accented",
    "\ufffd ERROR replaced byte tenant_id=x",
    '{"level":"info"} and text after it',
    '{"tenant_id":"a\\"b","msg":"cut',
    "\udcff ERROR a lone surrogate tenant_id=acme",
]

#: Characters random text lines are drawn from: the ones the scanners look at, and a few others.
ALPHABET = [
    *'   \t\x0b\x1c="\\.-_:/[]<>{}0123456789xXaTVDIWEF',
    *["level", "lvl", "severity", "LEVEL", "Level", "tenant_id", "tenant_id=", "error", "ERROR", "warn"],
    *["info", "inf", "crit", "fatal", "panic", "notice", "trace", "dbg", "bogus", "\\xff", "\\x8a", "\\x7f"],
]


def _python(lines: list[str], key_field: str | None) -> tuple[list[str], list[str | None] | None]:
    analyzer = Analyzer(key_field)
    levels = [level_of_text(x) for x in lines]
    keys = [analyzer._logfmt_value(x) for x in lines] if key_field else None
    return levels, keys


def _c(lines: list[str], key_field: str | None) -> tuple[list[str | None], list[str | None] | None, int]:
    levels: list[str | None] = [None] * len(lines)
    keys: list[str | None] | None = [None] * len(lines) if key_field else None
    left = _speedups.text_levels(lines, levels, keys, key_field, CANONICAL)
    return levels, keys, left


def _same(lines: list[str], key_field: str | None) -> None:
    c_levels, c_keys, left = _c(lines, key_field)
    py_levels, py_keys = _python(lines, key_field)
    assert left == 0  # every line decided in C: nothing is left to Python
    for i, line in enumerate(lines):
        assert c_levels[i] == py_levels[i], (line, c_levels[i], py_levels[i])
        if key_field:
            assert c_keys is not None and py_keys is not None
            assert c_keys[i] == py_keys[i], (line, c_keys[i], py_keys[i])


@pytest.mark.parametrize("key_field", [None, "tenant_id", "level", "msg", "t", "a=b", "="])
def test_edge_cases_give_what_python_gives(key_field: str | None) -> None:
    _same(EDGE_LINES, key_field)


def test_random_text_lines_give_what_python_gives() -> None:
    rnd = random.Random(20)
    lines = ["".join(rnd.choice(ALPHABET) for _ in range(rnd.randrange(0, 60))) for _ in range(8_000)]
    lines = [x for x in lines if not x.startswith("{")]
    for key_field in (None, "tenant_id"):
        _same(lines, key_field)


@pytest.mark.parametrize("fmt", ["plain", "logfmt", "mixed"])
def test_generated_lines_give_what_python_gives(fmt: str) -> None:
    f = LineFactory(fmt, 150, levels="trace=1,debug=1,info=1,warn=1,error=1,fatal=1,critical=1,none=1")
    lines = [x for x in f.batch(0, POOL_SIZE, EMIT_NS).lines if not x.startswith("{")]
    _same(lines, "tenant_id")
    levels, _keys, _left = _c(lines, None)
    assert {"", "trace", "debug", "info", "warn", "error", "fatal", "critical"} == set(levels)


def test_decided_lines_and_lines_left_to_python() -> None:
    """Only None levels are looked at; non-ASCII lines, lines starting with '{' that may be JSON
    and cut JSON lines whose key has an escape stay None (a cut JSON line is decided: see
    tests/unit/processing/test_levels.py)."""
    lines = ["ERROR tenant_id=a", *PYTHON_LINES, "WARN tenant_id=b"]
    levels: list[str | None] = ["info", *[None] * len(PYTHON_LINES), None]
    keys: list[str | None] = ["kept", *[None] * len(PYTHON_LINES), None]
    left = _speedups.text_levels(lines, levels, keys, "tenant_id", CANONICAL)
    assert left == len(PYTHON_LINES)
    assert levels == ["info", *[None] * len(PYTHON_LINES), "warn"]
    assert keys == ["kept", *[None] * len(PYTHON_LINES), "b"]
    with pytest.raises(ValueError, match="as long as lines"):
        _speedups.text_levels(lines, [None], None, None, CANONICAL)
    with pytest.raises(ValueError, match="key_field"):
        _speedups.text_levels(lines, [None] * len(lines), [None] * len(lines), None, CANONICAL)


def test_the_analyzer_gives_what_the_python_code_gives_on_every_kind_of_line() -> None:
    lines = EDGE_LINES + PYTHON_LINES + ['{"level":"warn","tenant_id":"j"}', '{"level":"info"']
    lines += LineFactory("mixed", 150).batch(0, 3000, EMIT_NS).lines
    for key_field in (None, "tenant_id"):
        analyzer = Analyzer(key_field)
        chunk = Chunk(Origin("file", "/var/log/x.log"), list(lines))
        analyzer.analyze(chunk)  # C: JSON, then text, then Python for what is left
        levels, keys = analyzer._analyze_lines(list(lines), key_field is not None)  # Python alone
        assert chunk.levels == levels
        assert chunk.keys == keys
