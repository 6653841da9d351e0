"""The Kafka source's fast path: one poll's records of a partition straight into chunk columns.

The records the agent's Kafka sink writes (and most JSON log topics) have the same members in
every message of a poll. For such a batch each rule of :class:`~log_capturer.sources.http.source.
Records` (which member is the message, the time, the level; what goes to fields; the origin) is
decided once, and a record costs a few list passes in C (orjson, ``map``, comprehensions) instead
of a Python step through ``Records._add``. The result is the chunks that path gives, with the
Kafka metadata and offsets already in place. :func:`agent_chunks` answers None whenever a record
needs a record-by-record decision (not a JSON object, members that differ, a message that is not
text or is empty, a time that does not parse, labels that differ within one source, ...): the
source then takes the general path, which gives the same chunks or rejects what must be.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast

import orjson

from log_capturer.record import Chunk, KafkaMeta, Origin
from log_capturer.sources.http.config import HTTP_RECORD_MEMBERS
from log_capturer.sources.http.source import MAX_ORIGINS, Records, _utc_ns, level_of, time_ns, uniform_lines
from log_capturer.sources.kafka.offsets import TP

if TYPE_CHECKING:
    from confluent_kafka import Message

try:
    from log_capturer import _speedups
except ImportError:  # pragma: no cover - an install without a C compiler
    _speedups = cast(Any, None)

_loads = orjson.loads
_MEMBERS = frozenset(HTTP_RECORD_MEMBERS)


def kafka_columns(msgs: Sequence[Message]) -> tuple[list[int], list[Any], list[int | None], list[Any]]:
    """Each message's offset, key (text), Kafka timestamp (ms; None without one) and headers."""
    from confluent_kafka import Message

    offsets: list[int] = list(map(Message.offset, msgs))  # type: ignore[arg-type]
    ms = [ts if kind else None for kind, ts in map(Message.timestamp, msgs)]
    keys: list[Any] = list(map(Message.key, msgs))
    if keys.count(None) != len(keys):
        keys = [k.decode("utf-8", "backslashreplace") if type(k) is bytes else k for k in keys]
    return offsets, keys, ms, list(map(Message.headers, msgs))


def kafka_meta(tp: TP, msgs: Sequence[Message]) -> tuple[list[dict[str, Any]], list[int], list[int | None]]:
    """Each message's Kafka metadata (what ``metadata_field`` holds), offsets and event time (ns,
    from the Kafka timestamp; None without one)."""
    return _meta_of(tp, *kafka_columns(msgs))


def _meta_of(
    tp: TP, offsets: list[int], keys: list[Any], ms: list[int | None], headers: list[Any]
) -> tuple[list[dict[str, Any]], list[int], list[int | None]]:
    topic, partition = tp
    meta: list[dict[str, Any]] = [
        {"topic": topic, "partition": partition, "offset": o, "key": k, "timestamp": t}
        for o, k, t in zip(offsets, keys, ms, strict=True)
    ]
    if headers.count(None) != len(headers):
        for km, h in zip(meta, headers, strict=True):
            if h:
                pairs = h.items() if isinstance(h, dict) else h
                km["headers"] = {
                    k: v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v for k, v in pairs
                }
    events = [t * 1_000_000 if t is not None and t > 0 else None for t in ms]
    return meta, offsets, events


_HEAD = slice(0, 19)
_FRACTION = slice(20, 29)


def _stamps(values: list[Any]) -> list[int] | None:
    """The event times of the time member's values, as ``time_ns`` reads them; None when one
    does not parse (that record's member goes to fields: the general path decides)."""
    if _speedups is not None:
        # The agent's shape, every one in C (None: one of another shape, read below).
        fast = _speedups.utc_stamps(values)
        if fast is not None:
            return fast
    n = len(values)
    if set(map(type, values)) == {str} and set(map(len, values)) == {30}:
        # The agent's own shape, 2026-12-01T10:00:00.123456789Z: each second parsed once, the
        # fractions read in C passes (every value is 30 long: its n-th characters are a slice).
        joined = "".join(values)
        fracs = list(map(str.__getitem__, values, repeat(_FRACTION)))
        digits = "".join(fracs)
        if joined[19::30] == "." * n and joined[29::30] == "Z" * n and digits.isascii() and digits.isdigit():
            heads = list(map(str.__getitem__, values, repeat(_HEAD)))
            seconds = {h: _utc_ns(h + "Z") for h in set(heads)}
            if None not in seconds.values():
                base = list(map(seconds.__getitem__, heads))
                return list(map(int.__add__, base, map(int, fracs)))  # type: ignore[arg-type]
    try:
        out = list(map(time_ns, values))
    except ValueError:  # digits int() does not read (the general path decides)
        return None
    return None if None in out else out  # type: ignore[return-value]


def _levels(values: list[Any], cache: dict[Any, str]) -> list[str | None]:
    """The level of each value (``level_of``; None: not a level). ``cache`` (Records' own) keeps
    the text values that are a level, so a batch of known levels costs one lookup each."""
    if set(map(type, values)) != {str}:
        return [level_of(v) or None for v in values]  # numbers, null, bools: as they are
    try:
        return list(map(cache.__getitem__, values))
    except KeyError:
        pass
    out: list[str | None] = []
    for v in values:
        found = cache.get(v)
        if found is None:
            found = level_of(v)
            if found:
                if len(cache) >= MAX_ORIGINS:
                    cache.clear()
                cache[v] = found
        out.append(found or None)
    return out


def agent_chunks(
    records: Records, base: Origin, field: str, tp: TP, msgs: Sequence[Message], fmt: str
) -> list[Chunk] | None:
    """The chunks of one partition's poll, as the general path makes them (``Records.chunks``
    then the metadata moved into ``field``), when every message is a JSON object with the same
    members and needs no record-by-record decision; None otherwise."""
    from confluent_kafka import Message

    n = len(msgs)
    if not n or fmt == "raw":
        return None
    values = [v or b"" for v in map(Message.value, msgs)]
    if sum(map(bytes.startswith, values, repeat(b"{"))) != n:
        return None
    scanned = _scan(records, values)
    if scanned is not None:
        # Every record is the first one but for its message, time and level: those are read in C,
        # the rest (origin, fields) once from the first record.
        first, keys, message_key, time_key, level_key, lines, time_values, level_values = scanned
        recs = [first]
    else:
        try:
            recs = list(map(_loads, values))
        except orjson.JSONDecodeError:
            return None
        if set(map(type, recs)) != {dict}:
            return None
        keys = set(recs[0])
        if sum(map(len, recs)) != n * len(keys) or set().union(*recs) != keys:
            return None
        chosen = _members(records, keys)
        if chosen is None:
            return None  # another member goes to fields, or a second message member: record by record
        message_key, time_key, level_key = chosen
        lines = list(map(itemgetter(message_key), recs))
        time_values = list(map(itemgetter(time_key), recs)) if time_key is not None else None
        level_values = list(map(itemgetter(level_key), recs)) if level_key is not None else None
    checked = uniform_lines(lines)
    if checked is None:
        return None
    lines = checked
    offsets, keys_of, ms, headers = kafka_columns(msgs)
    events = [t * 1_000_000 if t is not None and t > 0 else None for t in ms]
    stamps: list[int | None] = list(events)
    if time_values is not None:
        parsed = _stamps(time_values)
        if parsed is None:
            return None
        stamps = list(parsed)
    levels: list[str | None] | None = None
    wrong_levels: list[int] = []
    if level_values is not None:
        levels = _levels(level_values, records._level_cache)
        if None in levels:
            # Not a level: the member stays in the record's fields (as the general path does).
            wrong_levels = [i for i, lv in enumerate(levels) if lv is None]
    # The metadata as columns, made into dicts when read: records with no fields of their own,
    # no headers, no level left in their fields (the agent's records as its Kafka sink writes them).
    lazy = (
        scanned is not None
        and isinstance(first.get("fields"), dict | None)
        and not first.get("fields")
        and not wrong_levels
        and headers.count(None) == len(headers)
        and type(tp[1]) is int
    )
    meta: list[dict[str, Any]] = []
    if not lazy:
        meta = _meta_of(tp, offsets, keys_of, ms, headers)[0]
    out_meta: list[dict[str, Any] | None] = []
    if lazy:
        fields: list[Any] = []
    elif scanned is not None:
        # One fields object for all: each record its own copy with its metadata.
        shared = first.get("fields")
        if not isinstance(shared, dict | None):
            return None
        fields = [shared] * n
        out_meta = [{**shared, field: km} if shared else {field: km} for km in meta]
    else:
        fields = list(map(dict.get, recs, repeat("fields")))
        if not set(map(type, fields)) <= {dict, type(None)}:
            return None
        out_meta = []
        for f, km in zip(fields, meta, strict=True):
            if f is None:
                out_meta.append({field: km})
            else:
                f[field] = km
                out_meta.append(f)
    for i in wrong_levels:
        assert level_values is not None and level_key is not None
        f = {level_key: level_values[i]}
        f.update(fields[i] or {})
        f[field] = meta[i]
        out_meta[i] = f
    groups = _origins(records, base, recs, keys)
    if groups is None:
        return None
    now = time.time_ns()
    stream = f"{tp[0]}:{tp[1]}"
    out = []
    for origin, idx in groups:
        pick = (lambda values: values) if idx is None else _pick(idx)
        chunk = Chunk(origin, pick(lines), read_time_ns=now)
        if lazy:
            chunk.meta_columns = KafkaMeta(field, tp[0], tp[1], pick(offsets), pick(keys_of), pick(ms))
        else:
            chunk.meta = pick(out_meta)
        if levels is not None:
            group_levels = pick(levels)
            if group_levels.count(None) != len(group_levels):
                chunk.preset_levels = group_levels
        group_stamps = pick(stamps)
        if group_stamps.count(None) != len(group_stamps):
            chunk.timestamps = [now if s is None else s for s in group_stamps]
        chunk.offsets = pick(offsets)
        chunk.stream = stream
        out.append(chunk)
    return out


def _members(records: Records, keys: set[str]) -> tuple[str, str | None, str | None] | None:
    """The message, time and level members of records with ``keys``; None when there is no
    message member or another member goes to fields (a record-by-record decision)."""
    message_key = next((k for k in records.config.message_key if k in keys), None)
    time_key = next((k for k in records.config.timestamp_key if k in keys), None)
    level_key = next((k for k in records.config.level_key if k in keys), None)
    if message_key is None or not keys <= {message_key, time_key, level_key, *_MEMBERS}:
        return None
    return message_key, time_key, level_key


def _scan(
    records: Records, values: list[bytes]
) -> (
    tuple[
        dict[str, Any], set[str], str, str | None, str | None, list[str], list[Any] | None, list[Any] | None
    ]
    | None
):
    """The poll read by ``_speedups.agent_scan`` when every record has the first one's members,
    in its order, and differs from it only in the text of its message, time and level: (the first
    record, its members, the message, time and level members, then their values); None: read
    each record with orjson."""
    if _speedups is None:
        return None
    try:
        first = _loads(values[0])
    except orjson.JSONDecodeError:
        return None
    if type(first) is not dict:
        return None
    order = tuple(first)
    keys = set(order)
    chosen = _members(records, keys)
    if chosen is None:
        return None
    message_key, time_key, level_key = chosen
    got = _speedups.agent_scan(
        values,
        order,
        order.index(message_key),
        -1 if time_key is None else order.index(time_key),
        -1 if level_key is None else order.index(level_key),
    )
    if got is None:
        return None
    lines, times, levels = got
    return first, keys, message_key, time_key, level_key, lines, times, levels


def _pick(idx: list[int]) -> Any:
    if len(idx) == 1:
        i = idx[0]
        return lambda values: [values[i]]
    get = itemgetter(*idx)
    return lambda values: list(get(values))


def _origins(
    records: Records, base: Origin, recs: list[dict[str, Any]], keys: set[str]
) -> list[tuple[Origin, list[int] | None]] | None:
    """The records' origins, each with its records' indexes (None: all of them), in the order of
    their first record; None when records of one source and type have different labels, or an
    origin member is invalid (the general path rejects those records)."""
    from log_capturer.sources.http.source import _Invalid

    n = len(recs)
    if not keys & _MEMBERS - {"fields"}:
        return [(base, None)]
    types = list(map(dict.get, recs, repeat("source_type")))
    ids = list(map(dict.get, recs, repeat("source_id")))
    labels = list(map(dict.get, recs, repeat("labels")))
    try:
        if types.count(types[0]) == n and ids.count(ids[0]) == n and labels.count(labels[0]) == n:
            return [(records.origin(recs[0], 1, base), None)]
        by_source: dict[tuple[Any, Any], list[int]] = {}
        for i, key in enumerate(zip(types, ids, strict=True)):
            group = by_source.get(key)
            if group is None:
                by_source[key] = [i]
            else:
                group.append(i)
        by_origin: dict[int, tuple[Origin, list[int]]] = {}
        for idx in by_source.values():
            first = labels[idx[0]]
            if sum(labels[i] == first for i in idx) != len(idx):
                return None
            origin = records.origin(recs[idx[0]], idx[0] + 1, base)
            found = by_origin.get(id(origin))
            if found is None:
                by_origin[id(origin)] = (origin, idx)
            else:
                found[1].extend(idx)
                found[1].sort()
    except (_Invalid, TypeError):  # TypeError: an unhashable source_type or source_id
        return None
    return [(origin, idx) for origin, idx in by_origin.values()]
