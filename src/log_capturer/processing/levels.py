"""Level detection for JSON, logfmt and plain-text lines.

Levels are normalised to lower-case names: trace, debug, info, warn, error,
fatal, critical; ``""`` when none is found. Detection is case-insensitive:

- JSON objects: the ``level``, ``severity``, ``lvl`` (or ``log.level``,
  ``loglevel``) member, including pino/bunyan numbers (10..60);
- logfmt: ``level=``, ``lvl=`` or ``severity=``;
- plain text: the first level word in the first 120 characters (``ERROR``,
  ``[WARN]``, ``<info>``, ``level:debug``...), or a glog/logcat one-letter prefix
  (``W1125 ...``, ``E/Tag: ...``, ``W 12:00:01 ...``).

Bytes that were not valid UTF-8 do not stop detection. The file, stdin and
syslog sources decode them as ``\\xNN`` escapes (``backslashreplace``, the
default) or U+FFFD (``replace``). In a JSON string a ``\\xNN`` escape is not
valid JSON, so a line that orjson refuses is read again with each of them taken
as its four characters, and each lone UTF-16 surrogate escape (``\\ud800``,
which orjson refuses too) as U+FFFD: a member keeps the text the line was
decoded to, so the same bytes always give the same key. In plain text an
invalid byte separates words, as U+FFFD does.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

CANONICAL: dict[str, str] = {
    "trace": "trace",
    "trc": "trace",
    "verbose": "trace",
    "finest": "trace",
    "finer": "trace",
    "debug": "debug",
    "dbg": "debug",
    "fine": "debug",
    "info": "info",
    "inf": "info",
    "information": "info",
    "informational": "info",
    "notice": "info",
    "warn": "warn",
    "warning": "warn",
    "wrn": "warn",
    "error": "error",
    "err": "error",
    "severe": "error",
    "eror": "error",
    "fatal": "fatal",
    "ftl": "fatal",
    "panic": "fatal",
    "emerg": "fatal",
    "emergency": "fatal",
    "alert": "fatal",
    "critical": "critical",
    "crit": "critical",
    "crt": "critical",
}
_LETTER = {"V": "trace", "D": "debug", "I": "info", "W": "warn", "E": "error", "F": "fatal"}
NUMERIC = {10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal"}
JSON_KEYS = ("level", "severity", "lvl", "log.level", "loglevel", "levelname")

#: A whole word of the lower-cased head (not inside a dotted or dashed name); the first one that
#: is a level name wins. One simple pattern and a dict lookup are twice as fast as an alternation
#: of every level name with IGNORECASE.
_WORD = re.compile(r"(?<![\w.-])([a-z]+)(?![\w-])")
_LETTER_PREFIX = re.compile(r"^([VDIWEF])(?:\d{4}[ T]|/|\s+\d)")
_LOGFMT = re.compile(r"(?:^|\s)(?:level|lvl|severity)=\"?([A-Za-z]+)", re.IGNORECASE)
#: What ``backslashreplace`` writes for an invalid byte: always 0x80-0xff, lower-case hex.
_INVALID_BYTE = re.compile(r"\\x[89a-f][0-9a-f]")
#: The backslash pairs of a line, from the left (so ``\\\\`` is never taken for the start of
#: one): an invalid byte's escape, a UTF-16 surrogate pair, a lone surrogate, anything else.
_REPAIRABLE = re.compile(
    r"\\(?:x[89a-f][0-9a-f]|u[dD][89abAB][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?"
    r"|u[dD][c-fC-F][0-9a-fA-F]{2}|.)",
    re.DOTALL,
)


def level_of_value(value: Any) -> str:
    """Normalise a level taken from a structured field."""
    if isinstance(value, str):
        return CANONICAL.get(value.strip().lower(), "")
    if isinstance(value, int) and not isinstance(value, bool):
        return NUMERIC.get(value, "")
    return ""


def level_of_mapping(obj: dict[str, Any]) -> str:
    for key in JSON_KEYS:
        if key in obj:
            return level_of_value(obj[key])
    return ""


def _repair(m: re.Match[str]) -> str:
    pair = m.group()
    if len(pair) == 4:  # \xNN: a backslash and three characters, in a JSON string
        return "\\" + pair
    if len(pair) == 6:  # a lone surrogate
        return "\\ufffd"
    return pair


def loads_tolerant(text: str) -> Any:
    """``orjson.loads(text)`` after a refusal: the value, with the invalid bytes' escapes as
    text and lone surrogates as U+FFFD (see the module docstring); None when it still is not
    JSON, or when nothing needed repair."""
    if "\\" not in text:
        return None
    fixed = _REPAIRABLE.sub(_repair, text)
    if fixed == text:
        return None
    try:
        return orjson.loads(fixed)
    except orjson.JSONDecodeError:
        return None


def parse_json_object(line: str) -> dict[str, Any] | None:
    """The line as a JSON object, or None when it is not one."""
    if not line.startswith("{"):
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        obj = loads_tolerant(line)
    return obj if isinstance(obj, dict) else None


def level_of_text(line: str) -> str:
    """Level of a logfmt or plain-text line."""
    if "=" in line:
        low = line.lower()
        if "level=" in low or "lvl=" in low or "severity=" in low:
            m = _LOGFMT.search(line)
            if m:
                return CANONICAL.get(m.group(1).lower(), "")
    head = line[:120]
    if "\\" in head:  # one character: a memchr; a two-character search costs ten times more
        head = _INVALID_BYTE.sub(" ", head)
    canonical = CANONICAL.get
    for m in _WORD.finditer(head.lower()):
        level = canonical(m.group(1))
        if level is not None:
            return level
    m = _LETTER_PREFIX.match(head)
    if m:
        return _LETTER[m.group(1)]
    return ""


def detect_level(line: str) -> str:
    """Level of one line, whatever its format."""
    obj = parse_json_object(line)
    if obj is not None:
        return level_of_mapping(obj)
    return level_of_text(line)
