"""The JSON envelope (``encoding.codec: json``, the default), built with byte templates; the
other codecs are in :mod:`log_capturer.sinks.encoding`.

Shape (one object per line)::

    {"timestamp": "2026-11-25T06:40:00.123456789Z",   # event time if known, else read time; RFC 3339, ns
     "message": "<the original line>",
     "level": "error",                                  # "" when no level was found
     "source_type": "file", "source_id": "/var/log/app.log",
     "labels": {...},                                   # the source's labels
     "fields": {...},                                   # values extracted from the line
     "truncated": true}                                 # only when the line was cut

The constant parts (origin, level) are encoded once per chunk; per line only
the message and fields are serialised, with orjson.
"""

from __future__ import annotations

import bisect
import time
from typing import Any, cast

import orjson

from log_capturer.record import Chunk
from log_capturer.sinks.encoding import rfc3339_ns

try:
    from log_capturer import _speedups
except ImportError:  # pragma: no cover - an install without a C compiler
    # Typed as the module (``_speedups.pyi``); None picks the Python code at each use.
    _speedups = cast(Any, None)

_dumps = orjson.dumps
LEVELS = ("", "trace", "debug", "info", "warn", "error", "fatal", "critical")
#: Most keys' ``"fields"`` objects kept between chunks (per shape; about 150 bytes each); past it
#: a new table starts (keys that never repeat, such as request ids, cost what they did before).
KEY_CACHE_SIZE = 20_000
_key_tables: dict[tuple[bytes, bytes], dict[str | None, bytes]] = {}


def key_table(keys: list[str | None], prefix: bytes, suffix: bytes, none: bytes) -> dict[str | None, bytes]:
    """``{key: prefix + JSON(key) + suffix, None: none}`` for every key of ``keys``, from a table
    kept between chunks: each distinct key is encoded once (a source with thousands of distinct
    keys costs a lookup per line), in C. A full table is replaced, never cleared: a thread
    encoding with it keeps what it looks up."""
    table = _key_tables.get((prefix, suffix))
    if table is None or len(table) > KEY_CACHE_SIZE:
        table = _key_tables[(prefix, suffix)] = {None: none}
    _speedups.key_fields(keys, table, prefix, suffix, _dumps)
    return table


class _Heads(dict[int, bytes]):
    """A chunk's record heads by event time (ns): ``{"timestamp":"...","message":``. Event times
    mostly differ by their fraction only, so each second is formatted once."""

    def __init__(self) -> None:
        super().__init__()
        self._seconds: dict[int, bytes] = {}

    def __missing__(self, ns: int) -> bytes:
        sec, frac = divmod(ns, 1_000_000_000)
        prefix = self._seconds.get(sec)
        if prefix is None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
            prefix = self._seconds[sec] = b'{"timestamp":"' + stamp.encode()
        head = self[ns] = prefix + b".%09dZ" % frac + b'","message":'
        return head


def encode_chunk(chunk: Chunk, key_field: str | None) -> list[bytes]:
    """Encode every line of an analysed chunk as a record."""
    origin = chunk.origin
    head = b'{"timestamp":"' + rfc3339_ns(chunk.read_time_ns).encode() + b'","message":'
    tails = {
        lvl: b',"level":"' + lvl.encode() + b'",' + origin.encoded + b',"fields":'
        for lvl in set(chunk.levels)
    }
    keys = chunk.keys
    cols = chunk.meta_columns
    meta: list[Any] | None
    if cols is not None and _speedups is not None and (keys is None or key_field not in cols.members):
        # Each record's fields object already encoded (the Kafka source's metadata, OTLP's
        # fields); the key, never one of their members, spliced in by encode_full.
        meta = cols.encoded()
    else:
        meta = chunk.meta
    truncated = chunk.truncated
    stamps = chunk.timestamps
    out: list[bytes] = []
    append = out.append
    if keys is None and meta is None and not truncated and stamps is None:
        if _speedups is not None:
            # The same bytes, one allocation per record.
            return _speedups.encode(head, chunk.lines, chunk.levels, tails, None, {None: b"{}}"}, _dumps)
        for line, lvl in zip(chunk.lines, chunk.levels, strict=True):
            append(head + _dumps(line) + tails[lvl] + b"{}}")
        return out
    key_prefix = b"{" + _dumps(key_field) + b":" if key_field else b""
    if keys is not None and meta is None and not truncated and stamps is None and key_field:
        # Keys but nothing else per line (the usual JSON file): each key's ``"fields"`` object
        # is encoded once (a table kept between chunks in C, per chunk in Python).
        fields_of: dict[str | None, bytes] = {None: b"{}}"}
        if _speedups is not None:
            fields_of = key_table(keys, key_prefix, b"}}", b"{}}")
            return _speedups.encode(head, chunk.lines, chunk.levels, tails, keys, fields_of, _dumps)
        for line, lvl, k in zip(chunk.lines, chunk.levels, keys, strict=True):
            fb = fields_of.get(k)
            if fb is None:
                fb = fields_of[k] = key_prefix + _dumps(k) + b"}}"
            append(head + _dumps(line) + tails[lvl] + fb)
        return out
    if _speedups is not None:
        # Event times, fields, truncation (syslog, HTTP ingest, forward, OTLP): the same bytes in
        # one C pass; each key's ``"fields"`` object is encoded once (``key_table``).
        fields_by_key: dict[str | None, bytes] = {None: b"{}"}
        if keys is not None and key_field:
            fields_by_key = key_table(keys, key_prefix, b"}", b"{}")
        elif keys is not None:
            # Without a key_field the key is not a field.
            fields_by_key = dict.fromkeys(set(keys), b"{}")
        return _speedups.encode_full(
            head,
            chunk.lines,
            chunk.levels,
            tails,
            keys,
            fields_by_key,
            _dumps,
            stamps,
            _Heads(),
            meta,
            key_field or None,
            truncated or None,
        )
    return encode_chunk_py(chunk, key_field, head, tails)


def encode_chunk_py(chunk: Chunk, key_field: str | None, head: bytes, tails: dict[str, bytes]) -> list[bytes]:
    """The records of a chunk with event times, fields or truncated lines, in Python (what
    ``_speedups.encode_full`` gives, for an install without the C module and for its tests)."""
    keys = chunk.keys
    meta = chunk.meta
    truncated = chunk.truncated
    stamps = chunk.timestamps
    key_prefix = b"{" + _dumps(key_field) + b":" if key_field else b""
    out: list[bytes] = []
    append = out.append
    if keys is None and meta is None and not truncated and stamps is not None:
        # Event times but nothing else per line: one pass.
        heads = _Heads()
        return [
            heads[ns] + _dumps(line) + tails[lvl] + b"{}}"
            for ns, line, lvl in zip(stamps, chunk.lines, chunk.levels, strict=True)
        ]
    heads = _Heads()
    for i, (line, lvl) in enumerate(zip(chunk.lines, chunk.levels, strict=True)):
        if stamps is not None:
            head = heads[stamps[i]]
        extra = meta[i] if meta is not None else None
        k = keys[i] if keys is not None else None
        if extra and isinstance(extra, bytes):
            # Already encoded (never with key_field as a member): the key spliced in last.
            fb = extra
            if k is not None and key_field:
                keyed = key_prefix + _dumps(k) + b"}"
                fb = keyed if extra == b"{}" else extra[:-1] + b"," + keyed[1:]
        elif extra:
            fields = dict(extra)
            if k is not None and key_field:
                fields[key_field] = k
            fb = _dumps(fields)
        elif k is not None and key_field:
            fb = key_prefix + _dumps(k) + b"}"
        else:
            fb = b"{}"
        rec = head + _dumps(line) + tails[lvl] + fb
        append(rec + (b',"truncated":true}' if i in truncated else b"}"))
    return out


def ascii_lines(lines: list[str]) -> bool:
    """Whether every line is ASCII (so each line's characters are its UTF-8 bytes); False
    without the C module (the caller then encodes the lines)."""
    return _speedups is not None and _speedups.all_ascii(lines)


def topics_of(topic_of: dict[str, str], levels: list[str]) -> list[str]:
    """Each line's topic, by its level (KeyError: a level ``topic_of`` lacks). In C the dict is
    asked only when the level changes (a chunk's levels are a few str objects, over and over)."""
    if _speedups is not None:
        return _speedups.lookup_each(levels, topic_of)
    return list(map(topic_of.__getitem__, levels))


def tally(
    topics: list[str], values: list[bytes] | list[str], bounds: tuple[float, ...]
) -> tuple[dict[str, list[int]], int]:
    """Per topic: [records, bytes, then how many are at most each of ``bounds`` bytes]; and the
    largest record. One pass in C (the sink's per-record bookkeeping of a chunk). A value may be
    an ASCII str (codec raw: the line itself), whose size is its length."""
    if _speedups is not None:
        return _speedups.tally(topics, values, bounds)
    return tally_py(topics, values, bounds)


def tally_py(
    topics: list[str], values: list[bytes] | list[str], bounds: tuple[float, ...]
) -> tuple[dict[str, list[int]], int]:
    sizes: dict[str, list[int]] = {}
    for topic, value in zip(topics, values, strict=True):
        sizes.setdefault(topic, []).append(len(value))
    out: dict[str, list[int]] = {}
    for topic, lens in sizes.items():
        lens.sort()
        out[topic] = [len(lens), sum(lens), *(bisect.bisect_right(lens, b) for b in bounds)]
    return out, max(map(len, values), default=0)
