"""The steps of a pipeline. Each step works on the whole list of a chunk's events at once.

A step that cannot handle one event (no match, invalid JSON, missing field...)
leaves that event exactly as it was and counts a failure; the next steps
still run on it (so a ``redact`` step runs even when parsing failed).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from log_capturer.processing.levels import level_of_value, loads_tolerant
from log_capturer.processing.pipelines.redact import Redactor, _norm_key
from log_capturer.processing.pipelines.spec import (
    AnyStep,
    FieldAddSpec,
    FieldRemoveSpec,
    JsonParseSpec,
    LogfmtParseSpec,
    LogLevelExtractSpec,
    RedactSpec,
    RegexExtractSpec,
    TimestampParseSpec,
)
from log_capturer.processing.timestamps import parse_any, zone


class Event:
    """One line while it goes through a pipeline."""

    __slots__ = ("fields", "level", "message", "ts")

    def __init__(self, message: str, fields: dict[str, Any], level: str | None, ts: int | None) -> None:
        self.message = message
        self.fields = fields
        #: Level set by the source or a step; None = detected after the pipeline.
        self.level = level
        #: Event time in ns; None = the chunk's read time.
        self.ts = ts


@dataclass
class Context:
    source_type: str
    source_id: str
    redactions: Counter[str] = field(default_factory=Counter)


class _Missing:
    pass


MISSING = _Missing()
Path = tuple[str, ...]


def split_path(path: str) -> Path:
    return tuple(path.split("."))


def get_path(ev: Event, path: Path) -> Any:
    if path == ("message",):
        return ev.message
    node: Any = ev.fields
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def can_set(ev: Event, path: Path) -> bool:
    """True when every existing parent on ``path`` is an object (so a value can be set there)."""
    node: Any = ev.fields
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return True
        if not isinstance(node, dict):
            return False
    return True


def set_path(ev: Event, path: Path, value: Any) -> None:
    """Set a field (creating parent objects); ``message`` sets the line. Check :func:`can_set` first."""
    if path == ("message",):
        ev.message = value if isinstance(value, str) else _text(value)
        return
    node = ev.fields
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def del_path(ev: Event, path: Path) -> None:
    node: Any = ev.fields
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list) or value is None:
        return orjson.dumps(value).decode()
    return str(value)


class Step(ABC):
    """Base: ``run`` handles every event and returns how many it could not."""

    def __init__(self, index: int, kind: str) -> None:
        #: Used in metrics and messages, e.g. ``2:regex_extract``.
        self.label = f"{index}:{kind}"

    @abstractmethod
    def run(self, events: list[Event], ctx: Context) -> int:
        """Process every event in place; return the number of events this step could not handle."""


class _Extract(Step):
    """Shared by the parse steps: read ``field`` as text, put the result in fields or ``target``."""

    def __init__(self, index: int, kind: str, field_path: str, target: str) -> None:
        super().__init__(index, kind)
        self.path = split_path(field_path)
        self.target = split_path(target) if target else None

    @abstractmethod
    def parse(self, text: str) -> dict[str, Any] | None:
        """The fields found in ``text``, or None when it does not parse."""

    def run(self, events: list[Event], ctx: Context) -> int:
        failed = 0
        path, target = self.path, self.target
        for ev in events:
            value = get_path(ev, path)
            parsed = self.parse(value) if isinstance(value, str) else None
            if parsed is None or (target is not None and not can_set(ev, target)):
                failed += 1
                continue
            if target is None:
                ev.fields.update(parsed)
            else:
                set_path(ev, target, parsed)
        return failed


class RegexExtract(_Extract):
    def __init__(self, index: int, spec: RegexExtractSpec) -> None:
        super().__init__(index, spec.type, spec.field, spec.target)
        self.regex = re.compile(spec.pattern)

    def parse(self, text: str) -> dict[str, Any] | None:
        m = self.regex.search(text)
        if m is None:
            return None
        return {k: v for k, v in m.groupdict().items() if v is not None}


class JsonParse(_Extract):
    def __init__(self, index: int, spec: JsonParseSpec) -> None:
        super().__init__(index, spec.type, spec.field, spec.target)

    def parse(self, text: str) -> dict[str, Any] | None:
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:  # not JSON, or invalid bytes or lone surrogates in a string
            obj = loads_tolerant(text)
        return obj if isinstance(obj, dict) else None


_LOGFMT_PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)')
_ESCAPE = re.compile(r"\\(.)")


def _unquote(quoted: str) -> str:
    return _ESCAPE.sub(lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), quoted[1:-1])


class LogfmtParse(_Extract):
    def __init__(self, index: int, spec: LogfmtParseSpec) -> None:
        super().__init__(index, spec.type, spec.field, spec.target)

    def parse(self, text: str) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for key, raw in _LOGFMT_PAIR.findall(text):
            out[key] = _unquote(raw) if raw.startswith('"') else raw
        return out or None


class TimestampParse(Step):
    def __init__(self, index: int, spec: TimestampParseSpec) -> None:
        super().__init__(index, spec.type)
        self.path = split_path(spec.field)
        self.formats = list(spec.formats)
        self.tz = zone(spec.timezone)

    def run(self, events: list[Event], ctx: Context) -> int:
        failed = 0
        for ev in events:
            value = get_path(ev, self.path)
            ns = None if value is MISSING else parse_any(value, self.formats, self.tz)
            if ns is None:
                failed += 1
            else:
                ev.ts = ns
        return failed


_TEMPLATE = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")


class _Template:
    """Text with ``{{name}}`` placeholders, split once."""

    def __init__(self, text: str) -> None:
        self.parts: list[str | Path] = []
        pos = 0
        for m in _TEMPLATE.finditer(text):
            self.parts.append(text[pos : m.start()])
            self.parts.append(split_path(m.group(1)))
            pos = m.end()
        self.parts.append(text[pos:])

    def render(self, ev: Event, ctx: Context) -> str | None:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            if part == ("level",) and "level" not in ev.fields:
                value: Any = ev.level or ""
            elif part == ("source_type",) and "source_type" not in ev.fields:
                value = ctx.source_type
            elif part == ("source_id",) and "source_id" not in ev.fields:
                value = ctx.source_id
            else:
                value = get_path(ev, part)
                if value is MISSING:
                    return None
            out.append(_text(value))
        return "".join(out)


class FieldAdd(Step):
    def __init__(self, index: int, spec: FieldAddSpec) -> None:
        super().__init__(index, spec.type)
        self.overwrite = spec.overwrite
        self.values: list[tuple[Path, _Template | Any]] = [
            (split_path(k), _Template(v) if isinstance(v, str) else v) for k, v in spec.fields.items()
        ]

    def run(self, events: list[Event], ctx: Context) -> int:
        failed = 0
        for ev in events:
            updates: list[tuple[Path, Any]] = []
            ok = True
            for path, spec in self.values:
                if not self.overwrite and get_path(ev, path) is not MISSING:
                    continue
                value = spec.render(ev, ctx) if isinstance(spec, _Template) else spec
                if value is None or not can_set(ev, path):
                    ok = False
                    break
                updates.append((path, value))
            if not ok:
                failed += 1
                continue
            for path, value in updates:
                set_path(ev, path, value)
        return failed


class FieldRemove(Step):
    def __init__(self, index: int, spec: FieldRemoveSpec) -> None:
        super().__init__(index, spec.type)
        self.paths = [split_path(p) for p in spec.fields]

    def run(self, events: list[Event], ctx: Context) -> int:
        for ev in events:
            for path in self.paths:
                del_path(ev, path)
        return 0


class LogLevelExtract(Step):
    def __init__(self, index: int, spec: LogLevelExtractSpec) -> None:
        super().__init__(index, spec.type)
        self.path = split_path(spec.field)
        self.mapping = spec.mapping

    def run(self, events: list[Event], ctx: Context) -> int:
        failed = 0
        for ev in events:
            value = get_path(ev, self.path)
            level = ""
            if value is not MISSING:
                level = self.mapping.get(_text(value).strip(), "") or level_of_value(value)
            if level:
                ev.level = level
            else:
                failed += 1
        return failed


class Redact(Step):
    def __init__(self, index: int, spec: RedactSpec) -> None:
        super().__init__(index, spec.type)
        self.redactor = Redactor(spec)
        self.message = spec.message
        self.all_fields = "*" in spec.fields
        self.paths = [split_path(p) for p in spec.fields if p != "*"]

    def run(self, events: list[Event], ctx: Context) -> int:
        r = self.redactor
        counts = ctx.redactions
        for ev in events:
            if self.message:
                ev.message = r.text(ev.message, counts)
            if self.all_fields:
                if ev.fields:
                    ev.fields = r.value(ev.fields, counts)
                continue
            for path in self.paths:
                value = get_path(ev, path)
                if value is MISSING:
                    continue
                if _norm_key(path[-1]) in r.keys and value not in (None, ""):
                    counts["key"] += 1
                    set_path(ev, path, r.replacement)
                else:
                    set_path(ev, path, r.value(value, counts))
        return 0


_BUILDERS: dict[str, type[Any]] = {
    "regex_extract": RegexExtract,
    "json_parse": JsonParse,
    "logfmt_parse": LogfmtParse,
    "timestamp_parse": TimestampParse,
    "field_add": FieldAdd,
    "field_remove": FieldRemove,
    "log_level_extract": LogLevelExtract,
    "redact": Redact,
}


def build_step(index: int, spec: AnyStep) -> Step:
    step: Step = _BUILDERS[spec.type](index, spec)
    return step
