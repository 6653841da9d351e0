"""Level detection for JSON, logfmt and plain-text lines.

Levels are normalised to lower-case names: trace, debug, info, warn, error,
fatal, critical; ``""`` when none is found. Detection is case-insensitive:

- JSON objects: the ``level``, ``severity``, ``lvl`` (or ``log.level``,
  ``loglevel``) member, including pino/bunyan numbers (10..60);
- logfmt: ``level=``, ``lvl=`` or ``severity=``;
- plain text: the first level word in the first 120 characters (``ERROR``,
  ``[WARN]``, ``<info>``, ``level:debug``...), or a glog/logcat one-letter prefix
  (``W1125 ...``, ``E/Tag: ...``, ``W 12:00:01 ...``).
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


def parse_json_object(line: str) -> dict[str, Any] | None:
    """The line as a JSON object, or None when it is not one."""
    if not line.startswith("{"):
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
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
