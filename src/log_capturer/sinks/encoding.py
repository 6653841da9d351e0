"""How a sink writes each line as a record: the ``encoding`` block every sink can carry.

``codec``:

- ``json`` (the default): the JSON envelope, byte for byte what the Kafka sink has always written
  (``timestamp``, ``message``, ``level``, ``source_type``, ``source_id``, ``labels``, ``fields``,
  and ``truncated`` when the line was cut); see :mod:`log_capturer.sinks.kafka.encode`;
- ``raw``: the line's bytes as the source read them (UTF-8), nothing added;
- ``logfmt``: the same members as ``key=value`` pairs, in the same order; ``labels`` and
  ``fields`` are flattened (``labels.env=prod``, ``fields.tenant_id=acme``); a value is quoted
  when it is empty or holds a space, ``=``, ``"``, ``\\`` or a control character.

``only_fields`` / ``except_fields`` keep or drop members of the json and logfmt records: a
top-level name (``labels``), or a path into ``labels`` or ``fields`` (``labels.app``,
``fields.user.id``): ``only_fields`` keeps just that part of the member (a member with nothing
of what is listed is left out), ``except_fields`` drops just that part. ``timestamp_format``
writes ``timestamp`` as RFC 3339 with nanoseconds (as always) or as Unix milliseconds (a number).

The level routing, the partition key and the Kafka headers come from the analysis of the line,
never from the encoded record, so they work the same with every codec.

Speed: per chunk, the parts that do not change from line to line (the read time, the origin, each
level's and each key's bytes) are encoded once; the C module (``_speedups``: ``encode``,
``encode_logfmt``, ``encode_raw``) then writes each record with one allocation, and no other
Python object per line. Lines with per-line extras (fields from the source, their own timestamp,
truncation) take the Python path, as the json envelope always did.

The model is shared by every sink: ``sinks.kafka.encoding``, ``sinks.local_file.encoding`` (the
record written as a line, :class:`ChunkEncoder` as for Kafka), ``sinks.loki.encoding`` (the
entry's line) and ``sinks.elasticsearch.encoding`` (the document), the last two from the parsed
record by :class:`DocEncoder`, with the same member writers.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import orjson
from pydantic import Field, model_validator

from log_capturer.config.base import Strict
from log_capturer.record import Chunk, Origin

try:
    from log_capturer import _speedups
except ImportError:  # pragma: no cover - an install without a C compiler
    _speedups = cast(Any, None)

_dumps = orjson.dumps

#: The members of a json or logfmt record, in the order they are written.
FIELDS = ("timestamp", "message", "level", "source_type", "source_id", "labels", "fields", "truncated")
#: The members with parts a path can name (``labels.app``, ``fields.user.id``).
MAPPINGS = ("labels", "fields")

#: Paths into a mapping as a tree: ``{"user": {"id": LEAF}}``; a leaf names the whole value.
PathTree = dict[str, Any]
_LEAF: PathTree = {}


def keep_paths(tree: PathTree, value: dict[str, Any]) -> dict[str, Any]:
    """The parts of ``value`` the tree names (only_fields), in ``value``'s order."""
    out: dict[str, Any] = {}
    for k, v in value.items():
        sub = tree.get(k)
        if sub is None:
            continue
        if sub is _LEAF:
            out[k] = v
        elif isinstance(v, dict):
            inner = keep_paths(sub, v)
            if inner:
                out[k] = inner
    return out


def drop_paths(tree: PathTree, value: dict[str, Any]) -> dict[str, Any]:
    """``value`` without the parts the tree names (except_fields)."""
    out: dict[str, Any] = {}
    for k, v in value.items():
        sub = tree.get(k)
        if sub is None:
            out[k] = v
        elif sub is not _LEAF:
            out[k] = drop_paths(sub, v) if isinstance(v, dict) else v
    return out


Codec = Literal["json", "raw", "logfmt"]


class EncodingConfig(Strict):
    """The ``encoding`` block of a sink."""

    codec: Codec = Field(
        "json",
        description="json: the JSON envelope (timestamp, message, level, source_type, source_id, "
        "labels, fields; in Kafka and local files byte for byte the record written before this "
        "option existed; a Loki line leaves the timestamp out, the entry carries it). raw: the "
        "line's bytes as read, nothing added (Kafka's level routing, partition keys and headers "
        "still work: they come from the analysis, not the record). logfmt: the envelope's "
        "members as key=value pairs, labels and fields flattened (labels.env=prod). "
        "Elasticsearch: raw and logfmt give a document of @timestamp and message.",
    )
    only_fields: list[str] | None = Field(
        None,
        description="json and logfmt: write only these members (of timestamp, message, level, "
        "source_type, source_id, labels, fields, truncated), in the record's usual order; a path "
        "into labels or fields (labels.app, fields.user.id) keeps only that part of it.",
    )
    except_fields: list[str] | None = Field(
        None,
        description="json and logfmt: write every member but these (same names and paths as "
        "only_fields; labels.app drops only that label).",
    )
    timestamp_format: Literal["rfc3339_ns", "unix_ms"] | None = Field(
        None,
        description="json and logfmt: 'rfc3339_ns' (the default: 2026-11-25T06:40:00.123456789Z) or "
        "'unix_ms' (milliseconds since the epoch, a number).",
    )

    @model_validator(mode="after")
    def _check(self) -> EncodingConfig:
        if self.codec == "raw":
            for key in ("only_fields", "except_fields", "timestamp_format"):
                if getattr(self, key) is not None:
                    raise ValueError(
                        f"encoding.{key} does not apply to codec: raw (the line is sent as it was "
                        f"read, nothing added); remove encoding.{key}, or use codec: json or logfmt"
                    )
        if self.only_fields is not None and self.except_fields is not None:
            raise ValueError(
                "encoding.only_fields and encoding.except_fields exclude each other; keep one of them"
            )
        for key in ("only_fields", "except_fields"):
            names: list[str] | None = getattr(self, key)
            if names is None:
                continue
            unknown = [n for n in names if n.partition(".")[0] not in FIELDS]
            if unknown:
                raise ValueError(
                    f"encoding.{key}: unknown member {', '.join(map(repr, unknown))}; "
                    f"use some of {', '.join(FIELDS)} (or a path into labels or fields: labels.app)"
                )
            flat = [n for n in names if "." in n and n.partition(".")[0] not in MAPPINGS]
            bad = [n for n in names if "." in n and "" in n.split(".")]
            if flat or bad:
                raise ValueError(
                    f"encoding.{key}: {(flat or bad)[0]!r} is not a path into labels or fields; "
                    "only those two members have parts (labels.app, fields.user.id)"
                )
        if not self.selected:
            raise ValueError(
                "encoding leaves no member in the record; keep at least one "
                "(only_fields: [message], say), or use codec: raw for the bare line"
            )
        return self

    @property
    def selected(self) -> tuple[str, ...]:
        """The members written (json and logfmt), in order."""
        if self.only_fields is not None:
            keep = {n.partition(".")[0] for n in self.only_fields}
            return tuple(f for f in FIELDS if f in keep)
        if self.except_fields is not None:
            drop = set(self.except_fields)
            return tuple(f for f in FIELDS if f not in drop)
        return FIELDS

    @property
    def paths(self) -> dict[str, PathTree]:
        """Per mapping member (labels, fields), the tree of the paths into it that only_fields
        keeps or except_fields drops (no entry: the member is written whole)."""
        names = self.only_fields if self.only_fields is not None else self.except_fields or []
        whole = {n for n in names if "." not in n}
        trees: dict[str, PathTree] = {}
        for name in names:
            head, dot, rest = name.partition(".")
            if not dot or head in whole:
                continue
            node = trees.setdefault(head, {})
            parts = rest.split(".")
            for part in parts[:-1]:
                nxt = node.get(part)
                if nxt is _LEAF:
                    break  # a shorter path already names the whole value
                if nxt is None:
                    nxt = node[part] = {}
                node = nxt
            else:
                node[parts[-1]] = _LEAF
        return trees

    @property
    def envelope(self) -> bool:
        """The default record: the json envelope, every member, RFC 3339 timestamps."""
        return (
            self.codec == "json"
            and self.selected == FIELDS
            and not self.paths
            and self.timestamp_format != "unix_ms"
        )


# -- logfmt ------------------------------------------------------------------------------------
def utf8(text: str) -> bytes:
    """``text`` as UTF-8, a lone surrogate as U+FFFD (what ``_speedups.encode_raw`` writes)."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text).encode()


_LF_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _lf_special(c: str) -> bool:
    return c <= " " or c in '="\\\x7f'


def logfmt_value(value: Any) -> bytes:
    """A logfmt value: strings as they are, quoted when needed; other values as JSON text."""
    if isinstance(value, str):
        text = value
    elif value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = str(value)
    else:
        text = _dumps(value).decode()
    if text and not any(_lf_special(c) for c in text):
        return utf8(text)
    out = []
    for c in text:
        if c in _LF_ESCAPES:
            out.append(_LF_ESCAPES[c])
        elif c < " " or c == "\x7f":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return b'"' + utf8("".join(out)) + b'"'


def logfmt_key(name: str) -> bytes:
    """A logfmt key: what would break the pair (space, '=', '"', controls) becomes '_'."""
    return utf8("".join("_" if _lf_special(c) else c for c in name) or "_")


def logfmt_lines(lines: list[str]) -> list[bytes]:
    """The logfmt value of each line (the Python twin of the C writer's message part)."""
    return [logfmt_value(line) for line in lines]


# -- records -----------------------------------------------------------------------------------
#: The last second formatted, and its text: chunks read in the same second (10,000 one-line
#: chunks a second with many active files) share it (one tuple, replaced whole: any thread).
_SECOND: tuple[int, str] = (-1, "")


def rfc3339_ns(ns: int) -> str:
    global _SECOND
    sec, frac = divmod(ns, 1_000_000_000)
    last, text = _SECOND
    if sec != last:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _SECOND = (sec, text)
    return f"{text}.{frac:09d}Z"


class _Syntax:
    """How one member is written: json ('"name":value', joined by ',', in braces) or logfmt
    ('name=value', joined by ' ')."""

    def __init__(self, codec: str, unix_ms: bool) -> None:
        self.json = codec == "json"
        self.unix_ms = unix_ms
        self.open, self.sep, self.close = (b"{", b",", b"}") if self.json else (b"", b" ", b"")

    def member(self, name: str, value: Any) -> bytes:
        if self.json:
            return b'"' + name.encode() + b'":' + _dumps(value)
        return logfmt_key(name) + b"=" + logfmt_value(value)

    def timestamp(self, ns: int) -> bytes:
        value: Any = ns // 1_000_000 if self.unix_ms else rfc3339_ns(ns)
        return self.member("timestamp", value)

    def level(self, level: str) -> bytes:
        if not level and not self.json:
            return b""  # logfmt leaves out an unknown level
        return self.member("level", level)

    def mapping(self, name: str, values: dict[str, Any]) -> bytes:
        """labels and fields: one JSON object, or flattened logfmt pairs ('' when empty)."""
        if self.json:
            return b'"' + name.encode() + b'":' + _dumps(values)
        return b" ".join(self.member(f"{name}.{k}", v) for k, v in values.items())

    def message_key(self) -> bytes:
        return b'"message":' if self.json else b"message="

    def message(self, line: str) -> bytes:
        return self.message_key() + (_dumps(line) if self.json else logfmt_value(line))


class Paths:
    """The paths of only_fields / except_fields into labels and fields, applied to their values."""

    def __init__(self, config: EncodingConfig) -> None:
        self.trees = config.paths
        self.only = config.only_fields is not None

    def prune(self, name: str, value: dict[str, Any]) -> dict[str, Any] | None:
        """``value`` (the member ``name``) as written; None: the member is left out (only_fields
        named parts of it and it has none of them)."""
        tree = self.trees.get(name)
        if tree is None:
            return value
        if self.only:
            kept = keep_paths(tree, value)
            return kept or None
        return drop_paths(tree, value)


class ChunkEncoder:
    """Encodes a chunk's lines as records, by an :class:`EncodingConfig`.

    ``key_field``: the partition key's name, written in ``fields`` when the line had it (as the
    json envelope always did); ``envelope``: the function that writes the default json envelope
    (``sinks.kafka.encode.encode_chunk``)."""

    def __init__(
        self,
        config: EncodingConfig,
        key_field: str | None,
        envelope: Callable[[Chunk, str | None], list[bytes]],
    ) -> None:
        self.config = config
        self.key_field = key_field
        self._envelope = envelope
        self.codec = config.codec
        self.selected = frozenset(config.selected)
        self._is_envelope = config.envelope
        self._syntax = _Syntax(config.codec, config.timestamp_format == "unix_ms")
        self._paths = Paths(config)
        self._origins: dict[int, tuple[Origin, bytes, bytes, bytes]] = {}

    def encode(self, chunk: Chunk) -> list[bytes]:
        if self.codec == "raw":
            if _speedups is not None:
                return _speedups.encode_raw(chunk.lines)
            return [utf8(line) for line in chunk.lines]
        if self._is_envelope:
            return self._envelope(chunk, self.key_field)
        if (
            "message" in self.selected
            and chunk.meta is None
            and not chunk.truncated
            and chunk.timestamps is None
            and (chunk.keys is None or self.key_field)
        ):
            return self._templated(chunk)
        return self._each(chunk)

    # -- the parts of a record -----------------------------------------------------------------
    def _origin_parts(self, origin: Origin) -> tuple[bytes, bytes]:
        """(source_type+source_id, labels) of an origin, each with its leading separator, cached
        by the origin (sources keep one per file or container) while its ``encoded`` bytes (set
        again by ``Origin.reencode``) are the same."""
        cached = self._origins.get(id(origin))
        if cached is not None and cached[0] is origin and cached[3] is origin.encoded:
            return cached[1], cached[2]
        syn, sel = self._syntax, self.selected
        src = b"".join(
            syn.sep + syn.member(name, getattr(origin, name))
            for name in ("source_type", "source_id")
            if name in sel
        )
        labels = b""
        if "labels" in sel:
            kept = self._paths.prune("labels", origin.labels)
            part = syn.mapping("labels", kept) if kept is not None else b""
            labels = syn.sep + part if part else b""
        if len(self._origins) > 4096:
            self._origins.clear()
        self._origins[id(origin)] = (origin, src, labels, origin.encoded)
        return src, labels

    def _fields(self, extra: dict[str, Any] | None, key: str | None) -> bytes:
        """The fields member with its leading separator ('' when not written)."""
        if "fields" not in self.selected:
            return b""
        fields: dict[str, Any] = dict(extra) if extra else {}
        if key is not None and self.key_field:
            fields[self.key_field] = key
        kept = self._paths.prune("fields", fields)
        if kept is None:
            return b""
        part = self._syntax.mapping("fields", kept)
        return self._syntax.sep + part if part else b""

    def _level(self, level: str) -> bytes:
        if "level" not in self.selected:
            return b""
        part = self._syntax.level(level)
        return self._syntax.sep + part if part else b""

    def _templated(self, chunk: Chunk) -> list[bytes]:
        """Every line with the same read time and no extras: the C writer fills in the message."""
        syn, sel = self._syntax, self.selected
        src, labels = self._origin_parts(chunk.origin)
        head = syn.open
        if "timestamp" in sel:
            head += syn.timestamp(chunk.read_time_ns) + syn.sep
        head += syn.message_key()
        tails = {lvl: self._level(lvl) + src + labels for lvl in set(chunk.levels)}
        keys = chunk.keys
        fields_of: dict[str | None, bytes] = {None: self._fields(None, None) + syn.close}
        if keys is not None:
            for k in set(keys):
                if k is not None:
                    fields_of[k] = self._fields(None, k) + syn.close
        if _speedups is not None:
            if syn.json:
                return _speedups.encode(head, chunk.lines, chunk.levels, tails, keys, fields_of, _dumps)
            return _speedups.encode_logfmt(head, chunk.lines, chunk.levels, tails, keys, fields_of)
        value = _dumps if syn.json else logfmt_value
        line_keys: Sequence[str | None] = keys if keys is not None else [None] * len(chunk.lines)
        return [
            head + value(line) + tails[lvl] + fields_of[k]
            for line, lvl, k in zip(chunk.lines, chunk.levels, line_keys, strict=True)
        ]

    def _each(self, chunk: Chunk) -> list[bytes]:
        """Line by line: extras from the source, per-line timestamps, truncation, or no message."""
        syn, sel = self._syntax, self.selected
        src, labels = self._origin_parts(chunk.origin)
        keys, meta, stamps, truncated = chunk.keys, chunk.meta, chunk.timestamps, chunk.truncated
        stamp_of: dict[int, bytes] = {}
        out: list[bytes] = []
        for i, (line, lvl) in enumerate(zip(chunk.lines, chunk.levels, strict=True)):
            parts = b""
            if "timestamp" in sel:
                ns = stamps[i] if stamps is not None else chunk.read_time_ns
                ts = stamp_of.get(ns)
                if ts is None:
                    ts = stamp_of[ns] = syn.sep + syn.timestamp(ns)
                parts += ts
            if "message" in sel:
                parts += syn.sep + syn.message(line)
            parts += self._level(lvl) + src + labels
            parts += self._fields(
                meta[i] if meta is not None else None, keys[i] if keys is not None else None
            )
            if "truncated" in sel and i in truncated:
                parts += syn.sep + syn.member("truncated", True)
            out.append(syn.open + parts[len(syn.sep) :] + syn.close)
        return out


def parse_rfc3339_ns(text: str) -> int:
    """Nanoseconds of a record's RFC 3339 UTC timestamp (``2026-01-02T03:04:05.123456789Z``)."""
    sec = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    frac = text[20:].rstrip("Z") if text[19:20] == "." else ""
    return sec * 1_000_000_000 + (int(frac.ljust(9, "0")[:9]) if frac.isdigit() else 0)


class DocEncoder:
    """Encodes a parsed record (the json envelope as a dict: a Loki entry's or a replayed
    record's) by an :class:`EncodingConfig`, with the same member writers as
    :class:`ChunkEncoder`: the json and logfmt records are the same bytes.

    ``entry_time``: the record's time travels beside it (a Loki entry's timestamp), so
    ``timestamp`` is written only when ``only_fields`` names it (as Vector's ``remove_timestamp``).
    Members the envelope does not have (none today) follow the known ones, unless only_fields."""

    def __init__(self, config: EncodingConfig, entry_time: bool = False) -> None:
        self.config = config
        self.codec = config.codec
        selected = config.selected
        if entry_time and not (config.only_fields is not None and "timestamp" in config.only_fields):
            selected = tuple(f for f in selected if f != "timestamp")
        self.selected = selected
        self.dropped = frozenset(FIELDS) - frozenset(selected)
        self.others = config.only_fields is None
        self._syntax = _Syntax(config.codec, config.timestamp_format == "unix_ms")
        self._paths = Paths(config)

    def encode(self, doc: dict[str, Any]) -> bytes:
        if self.codec == "raw":
            message = doc.get("message")
            return utf8(message if isinstance(message, str) else "" if message is None else str(message))
        syn = self._syntax
        parts: list[bytes] = []
        for name in self.selected:
            if name not in doc:
                continue
            value = doc[name]
            if name == "timestamp":
                if syn.unix_ms and isinstance(value, str):
                    try:
                        parts.append(syn.timestamp(parse_rfc3339_ns(value)))
                        continue
                    except ValueError:
                        pass
                parts.append(syn.member(name, value))
            elif name in MAPPINGS and isinstance(value, dict):
                kept = self._paths.prune(name, value)
                part = syn.mapping(name, kept) if kept is not None else b""
                if part:
                    parts.append(part)
            elif name == "level" and isinstance(value, str):
                part = syn.level(value)
                if part:
                    parts.append(part)
            else:
                parts.append(syn.member(name, value))
        if self.others:
            parts.extend(
                syn.member(k, v) for k, v in doc.items() if k not in FIELDS and k not in self.dropped
            )
        return syn.open + syn.sep.join(parts) + syn.close
