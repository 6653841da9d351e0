"""HTTP ingest: ``POST /api/v1/logs`` on the API server.

The body is JSON (one object or an array of objects), NDJSON (one object per
line) or msgpack (a stream of maps, or Fluent Bit's ``[time, record]`` and
``[[time, metadata], record]`` events, what its ``http`` output sends by
default), chosen by ``Content-Type``; a body of another or no type is msgpack
when it starts like a msgpack map or array, else JSON. ``Content-Encoding: gzip``
bodies are decompressed (by aiohttp). Each object is a record::

    {"message": "text (required, non-empty)",  # or log (Fluent Bit, Docker), msg (Pino): message_key
     "level": "error",                      # optional (level_key); names, syslog and Pino numbers
     "source_type": "api", "source_id": "http",   # optional (http_ingest defaults)
     "labels": {"tenant_id": "acme"},       # optional, string values
     "timestamp": "2026-11-25T12:00:00Z",   # optional (timestamp_key): RFC 3339 or epoch numbers
     "fields": {...}}                       # optional; other members are added to fields

One bad record never costs the good ones: records that cannot be shipped
(not an object, no message, an empty message, a member of the wrong type, a
line that is not JSON) are rejected one by one, parked in the local DLQ with
their reason (``failed_sink: http_ingest``, ``error_type: invalid_record``, no
topic: they are kept for people to read and are never replayed), or skipped
(empty messages with ``empty_messages: skip``), counted, and logged at most
once per ``REJECT_LOG_INTERVAL`` with an example; the others are shipped and
the answer is 200. They are parked directly in the store, not through a sink's
``dead_letter``: a sink parks records it was given (encoded for its topic, in
its name), and these never reached one; the store is the same one, so ``dlq
list``, ``dlq stats`` and ``/dlq/stats`` show them.

Answers (always JSON):

- 200 ``{"status": "accepted", "accepted": N, "rejected": M, ...}``: every
  record was queued (and, with ``http_ingest.acknowledgements``, acknowledged
  by the sinks) or rejected; with M > 0, ``rejected_by_reason`` and the first
  ``errors`` say why. A client must not resend any of them;
- 400 ``{"status": "rejected", "error": ...}``: the body cannot be read at all
  (empty, or not JSON, NDJSON or msgpack); nothing of the request was queued;
- 413: the body is larger than ``http_ingest.max_body_bytes``;
- 429 (with ``Retry-After``): the dispatcher queue stayed full for
  ``queue_timeout``; nothing was queued, unless ``accepted`` says otherwise
  (a request whose records span several sources is queued one source at a
  time), and nothing was parked;
- 503: the agent is stopping, or the records were not acknowledged within
  ``ack_timeout`` (they may still be delivered; resending is at-least-once);
- 500 ``{"status": "error", "error": ...}``: the handler crashed (a bug). The
  server goes on; the crash is logged with its traceback, counted in
  ``errors_total{component="http_ingest",error_type="crash"}``, and
  ``http_ingest`` is degraded in ``/health`` until a request is handled again.
  Records of the request may have been queued: resending is at-least-once.

The event loop never blocks: parsing, the dispatcher's blocking ``submit`` and the
DLQ's durable writes run in the default executor (so :class:`Records` is used
from several threads at once: its origin cache only ever gains valid entries, and
a lost insert costs an Origin made twice).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat
from operator import itemgetter
from typing import Any, Protocol, cast

import msgpack
import orjson
from aiohttp import web
from prometheus_client import Counter as Counter_

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.processing.levels import NUMERIC, level_of_value, loads_tolerant
from log_capturer.processing.timestamps import NS, parse_rfc3339
from log_capturer.record import Chunk, Origin
from log_capturer.reliability.dlq import DeadLetterStore, DLQEntry, DLQWriteError
from log_capturer.sources.base import BuildContext, Handler, SourceComponent
from log_capturer.sources.http.config import HTTP_RECORD_MEMBERS, HttpIngestConfig
from log_capturer.sources.listener import Group, Receiver, all_acked_future, chunks_of, read_body
from log_capturer.sources.supervise import describe
from log_capturer.sources.syslog.parse import LEVELS as SYSLOG_LEVELS

try:
    from log_capturer import _speedups
except ImportError:  # pragma: no cover - an install without a C compiler
    _speedups = cast(Any, None)

log = logging.getLogger(__name__)

PATH = "/api/v1/logs"
#: ``failed_sink`` of the DLQ entries of rejected records.
NAME = "http_ingest"
MAX_ORIGINS = 1024
#: Rejected records are logged at most this often (seconds), with an example; all are counted.
REJECT_LOG_INTERVAL = 10.0
#: Rejected records an answer describes one by one (all are counted in it).
MAX_ERRORS = 10
FORMATS = (
    "JSON (an object or an array of objects), NDJSON (one object per line) or msgpack (a stream "
    "of maps, or Fluent Bit's [time, record] events)"
)
MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})
JSON_TYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonlines",
        "application/json-lines",
        "application/x-jsonlines",
        "application/x-json-stream",
        "application/stream+json",
        "text/json",
    }
)
#: First bytes of a msgpack map or array: what a msgpack body of records starts with.
_MSGPACK_START = frozenset(range(0x80, 0xA0)) | {0xDC, 0xDD, 0xDE, 0xDF}
_SCALARS = frozenset({str, int, float, bool, type(None)})
_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)

# Why a record was rejected (the ``reason`` label of http_ingest_records_rejected_total).
INVALID_JSON = "invalid_json"
INVALID_MSGPACK = "invalid_msgpack"
NOT_AN_OBJECT = "not_an_object"
MISSING_MESSAGE = "missing_message"
EMPTY_MESSAGE = "empty_message"
INVALID_FIELD = "invalid_field"
#: Where a rejected record went (the ``outcome`` label).
PARKED, SKIPPED, DROPPED = "parked", "skipped", "dropped"


class IngestError(Exception):
    """The request cannot be accepted; ``status`` is the HTTP code, the message says why.
    ``close``: the connection cannot carry another request (its body could not be read)."""

    def __init__(self, status: int, reason: str, *, close: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.close = close


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot be shipped: its place among the body's records (from 1), why (a
    ``reason`` word and a text for people), and what it was (JSON, for the DLQ entry)."""

    number: int
    reason: str
    error: str
    original: dict[str, Any]


class EventTime(int):
    """Fluent's EventTime (msgpack extension 0: seconds and nanoseconds), as ns since the epoch."""

    # No __dict__: an int's memory. Instances of a class are tracked by the cyclic GC all the same;
    # the C decoder (``_speedups.msgpack_values``) makes them untracked.
    __slots__ = ()


#: A body's items in order: records (with a msgpack event's time, or None) and rejected records.
Item = tuple[dict[str, Any], int | None] | Rejected


_SECONDS_NANOS = struct.Struct(">II").unpack


def _ext(code: int, data: bytes) -> Any:
    if code == 0 and len(data) == 8:
        seconds, nanos = _SECONDS_NANOS(data)
        return EventTime(seconds * NS + nanos)
    return msgpack.ExtType(code, data)


def parse_body(body: bytes, content_type: str = "") -> list[Item]:
    """The records of a body, as ``Content-Type`` says (see the module docstring); raises
    :class:`IngestError` (400) only when nothing of it can be read."""
    mime = content_type.partition(";")[0].strip().lower()
    if mime in MSGPACK_TYPES:
        return _msgpack_items(body)
    if mime in JSON_TYPES or mime.endswith("+json"):
        return _json_items(body)
    if body[:1] and body[0] in _MSGPACK_START:
        return _msgpack_items(body)
    return _json_items(body)


def _json_items(body: bytes) -> list[Item]:
    text = body.strip()
    if not text:
        raise IngestError(400, f"empty body: send {FORMATS}")
    try:
        whole = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if text[:1] == b"[":
            raise IngestError(400, f"the body is not a valid JSON array ({exc}); send {FORMATS}") from None
    else:
        values = whole if isinstance(whole, list) else [whole]
        return [(v, None) if isinstance(v, dict) else _not_an_object(i, v) for i, v in enumerate(values, 1)]
    # NDJSON. Its lines as one JSON array: one call instead of one per line. Taken only when every
    # line is one value (a missing comma across lines is not repaired); else line by line.
    try:
        values = orjson.loads(b"[" + text.replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError:
        pass
    else:
        if len(values) == text.count(b"\n") + 1:
            return [
                (v, None) if isinstance(v, dict) else _not_an_object(i, v) for i, v in enumerate(values, 1)
            ]
    out: list[Item] = []
    readable = False
    n = 0
    for line_no, raw in enumerate(text.split(b"\n"), 1):
        line = raw.strip()
        if not line:
            continue
        n += 1
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            obj = loads_tolerant(line.decode("utf-8", "backslashreplace"))
            if obj is None:
                raw_text = line.decode("utf-8", "backslashreplace")
                where = f"record {n}" if line_no == n else f"record {n} (line {line_no})"
                out.append(Rejected(n, INVALID_JSON, f"{where}: not JSON ({exc})", {"raw": raw_text}))
                continue
        readable = True
        out.append((obj, None) if isinstance(obj, dict) else _not_an_object(n, obj))
    if not readable:
        first = out[0]
        assert isinstance(first, Rejected)
        hint = ""
        if body.lstrip()[:1] and body.lstrip()[0] in _MSGPACK_START:
            hint = " (it looks like msgpack: send Content-Type: application/msgpack)"
        raise IngestError(400, f"the body is not {FORMATS}: {first.error}{hint}")
    return out


def _msgpack_items(body: bytes) -> list[Item]:
    if not body:
        raise IngestError(400, f"empty body: send {FORMATS}")
    # The usual body in one C call (the same values as msgpack's; text that is not UTF-8, other
    # extensions, a body that does not end with a whole value are left to msgpack, below).
    got = _speedups.msgpack_values(body, EventTime, False) if _speedups is not None else None
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=False,
        unicode_errors="backslashreplace",
        ext_hook=_ext,
        max_buffer_size=len(body),
    )
    values: Iterable[Any] = unpacker
    plain = False
    if got is not None:
        values, plain = got
    else:
        unpacker.feed(body)
    out: list[Item] = []
    n = 0
    error = ""
    try:
        for obj in values:
            if isinstance(obj, dict):
                n += 1
                out.append((obj, None))
                continue
            event = _event(obj)
            if event is not None:
                n += 1
                out.append(event)
            elif isinstance(obj, list) and obj and all(isinstance(o, dict) for o in obj):
                for o in obj:
                    n += 1
                    out.append((o, None))
            else:
                n += 1
                out.append(_not_an_object(n, _plain(obj), "a map or a [time, map] event"))
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        error = f"{type(exc).__name__}: {exc}"
    if not plain:
        try:
            # Whether every record is what JSON can hold, in one C call (most are maps of text).
            orjson.dumps([i[0] for i in out if not isinstance(i, Rejected)])
        except TypeError:
            out = [i if isinstance(i, Rejected) else (_plain(i[0]), i[1]) for i in out]
    consumed = len(body) if got is not None else unpacker.tell()
    if all(isinstance(i, Rejected) for i in out):
        # Nothing shaped like a record: most bytes decode as some msgpack value (text is a run of
        # small integers), so this is not msgpack of records at all.
        why = error or ("it ends early" if consumed < len(body) else "it holds no map")
        raise IngestError(400, f"the body is not {FORMATS}: msgpack cannot be decoded into records ({why})")
    if consumed < len(body):
        n += 1
        rest = body[consumed:]
        text = (
            f"record {n}: the last {len(rest)} bytes of the msgpack body cannot be decoded "
            f"({error or 'they end in the middle of a value'})"
        )
        out.append(Rejected(n, INVALID_MSGPACK, text, {"raw_base64": base64.b64encode(rest).decode()}))
    return out


def _event(obj: Any) -> tuple[dict[str, Any], int | None] | None:
    """A Fluent event, ``[time, record]`` or ``[[time, metadata], record]`` (Fluent Bit 2.1+),
    as (record, time in ns); None when ``obj`` is not one. The metadata is left out."""
    if not isinstance(obj, list) or len(obj) != 2 or not isinstance(obj[1], dict):
        return None
    head = obj[0]
    if isinstance(head, list) and head:
        head = head[0]
    if isinstance(head, EventTime):
        return obj[1], int(head)
    if isinstance(head, msgpack.Timestamp):
        return obj[1], head.to_unix_nano()
    if isinstance(head, int | float) and not isinstance(head, bool):
        return obj[1], _epoch_ns(head, NS)
    return None


def _plain(value: Any) -> Any:
    """A decoded msgpack value as JSON can hold it: binary as text (invalid UTF-8 as ``\\xNN``),
    keys as text, timestamps as ns, other extensions as ``{"ext_type", "data_base64"}``."""
    if type(value) in _SCALARS or isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, msgpack.ExtType):  # a named tuple: before the tuples
        return {"ext_type": value.code, "data_base64": base64.b64encode(value.data).decode()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, msgpack.Timestamp):
        return value.to_unix_nano()
    return str(value)


def _key(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return orjson.dumps(_plain(value)).decode() if isinstance(value, tuple | list) else str(value)


def _not_an_object(n: int, value: Any, what: str = "an object") -> Rejected:
    return Rejected(n, NOT_AN_OBJECT, f"record {n}: must be {what}, not {_kind(value)}", {"raw": value})


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def time_ns(value: Any) -> int | None:
    """An event time: RFC 3339 text, or a number (or numeric text) since the epoch in seconds,
    milliseconds, microseconds or nanoseconds, told apart by size (seconds up to 1e11, the year
    5138); None when it is neither."""
    if isinstance(value, EventTime):
        return int(value)
    if isinstance(value, str):
        ns = _utc_ns(value)
        if ns is None:
            ns = parse_rfc3339(value)
        if ns is not None:
            return ns
        value = _number(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    size = abs(value)
    unit = NS if size < 1e11 else 1_000_000 if size < 1e14 else 1_000 if size < 1e17 else 1
    return _epoch_ns(value, unit)


def uniform_lines(lines: list[Any]) -> list[str] | None:
    """A batch's messages as lines, a trailing newline (LF or CRLF) removed, when every one is a
    non-blank string; None when one is not (the batch then goes record by record)."""
    if set(map(type, lines)) != {str}:
        return None
    if any(map(str.endswith, lines, repeat("\n"))):
        lines = [(m[:-2] if m.endswith("\r\n") else m[:-1]) if m.endswith("\n") else m for m in lines]
    if "" in lines or any(map(str.isspace, lines)):
        return None
    return lines


def _utc_ns(text: str) -> int | None:
    """The usual shape, ``2026-11-25T08:00:00[.fraction]Z``, by datetime's C parser: about a third
    of :func:`parse_rfc3339`'s time, which reads the others (and says None when this does)."""
    if len(text) < 20 or text[-1] != "Z" or text[10] != "T":
        return None
    frac = text[19:-1]
    # isascii(): str.isdigit() also says True for "²" and other digits int() refuses.
    if frac and (frac[0] != "." or len(frac) > 10 or not (frac[1:].isascii() and frac[1:].isdigit())):
        return None
    try:
        moment = datetime.fromisoformat(text[:19])
    except ValueError:
        return None
    seconds = (moment - _EPOCH) // _SECOND
    return seconds * NS + (int(frac[1:].ljust(9, "0")) if frac else 0)


def _epoch_ns(value: float, unit: int) -> int | None:
    """``value`` units of ``unit`` ns since the epoch. A double holds about 16 digits, so an epoch
    time in one is exact to the microsecond at best (Fluent Bit writes six decimals): its ns are
    rounded to that instead of keeping binary noise."""
    if isinstance(value, int):
        return value * unit
    if not math.isfinite(value) or abs(value) >= 1e20:
        return None
    return round(value * unit / 1000) * 1000


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def level_of(value: Any) -> str:
    """A level from a record member: a name, a syslog severity (0-7) or a Bunyan/Pino number
    (10 trace ... 60 fatal, levels in between to the one below); '' when it is none of these."""
    if isinstance(value, str):
        level = level_of_value(value)
        if level or not value.strip().isdigit():
            return level
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        return ""
    if 0 <= value < len(SYSLOG_LEVELS):
        return SYSLOG_LEVELS[value]
    if value >= 10:
        return NUMERIC[min(value // 10, 6) * 10]
    return ""


class _Invalid(Exception):
    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


class RecordShape(Protocol):
    """What :class:`Records` reads of a source's section (``http_ingest``, ``forward``)."""

    message_key: list[str]
    timestamp_key: list[str]
    level_key: list[str]
    source_type: str
    source_id: str
    labels: dict[str, str]
    pipeline: str


#: A member a record does not have (None is a value: JSON's null).
_ABSENT: Any = object()
#: Above this many distinct label sets in a batch, its records' origins are found one by one.
_MAX_DISTINCT_LABELS = 256


def _picker(idx: list[int]) -> Callable[[list[Any]], list[Any]]:
    """A function that takes the items at ``idx`` of a list, as a list (one C call)."""
    if len(idx) == 1:
        i = idx[0]
        return lambda values: [values[i]]
    get = itemgetter(*idx)
    return lambda values: list(get(values))


class Records:
    """Validates records and groups them into one chunk per origin (source_type, source_id, labels).

    Shared by the sources that receive records (HTTP ingest, forward): ``section`` names the
    config section in the reasons given for rejected records."""

    def __init__(self, config: RecordShape, section: str = "http_ingest") -> None:
        self.config = config
        self.section = section
        self._origins: dict[tuple[Any, ...], Origin] = {}
        self._message_keys = tuple(config.message_key)
        self._time_keys = tuple(config.timestamp_key)
        self._level_keys = tuple(config.level_key)
        self._message_list = ", ".join(self._message_keys)
        self.default = Origin(config.source_type, config.source_id, dict(config.labels), config.pipeline)
        #: Members that make :meth:`_uniform` go record by record (a time member may not parse).
        self._slow_keys = frozenset(("fields", "source_type", "source_id", *self._time_keys))
        #: Level member values -> their level (only values that are one).
        self._level_cache: dict[Any, str] = {}

    def origin(self, rec: dict[str, Any], i: int, base: Origin | None = None) -> Origin:
        """The origin of record ``i``: its source_type, source_id and labels over those of
        ``base`` (the section's defaults when None). Origins are kept by the record's own members,
        so the usual record costs one lookup; a record with none of them has ``base`` itself."""
        source_type, source_id, labels = rec.get("source_type"), rec.get("source_id"), rec.get("labels")
        if base is None:
            base = self.default
        if source_type is None and source_id is None and labels is None:
            return base
        try:
            key = (base, source_type, source_id, tuple(labels.items()) if type(labels) is dict else labels)
            return self._origins[key]
        except (KeyError, TypeError):  # TypeError: a label value that cannot be a key (it is invalid)
            pass
        origin = Origin(
            _text(source_type, "source_type", i) or base.source_type,
            _text(source_id, "source_id", i) or base.source_id,
            self._labels(labels, i, base.labels),
            pipeline=base.pipeline,
        )
        if len(self._origins) >= MAX_ORIGINS:
            self._origins.clear()
        self._origins[key] = origin
        return origin

    def chunks(self, items: list[Item], base: Origin | None = None) -> tuple[list[Chunk], list[Rejected]]:
        """The chunks of the records that can be shipped, and the records that cannot. ``base``
        gives the origin of records that name none of their own (default: the section's)."""
        fast = self._uniform(items, base)
        if fast is not None:
            return fast, []
        groups: dict[int, Group] = {}
        rejected: list[Rejected] = []
        for i, item in enumerate(items, 1):
            if isinstance(item, Rejected):
                rejected.append(item)
                continue
            rec, event_ns = item
            try:
                self._add(groups, i, rec, event_ns, base)
            except _Invalid as exc:
                rejected.append(Rejected(i, exc.reason, exc.text, rec))
        return chunks_of(groups.values()), rejected

    def forward_chunks(
        self, message: bytes, base_of: Callable[[str], Origin]
    ) -> tuple[str, Any, list[Chunk]] | None:
        """A Fluent forward message's chunks made straight from its bytes, in one C pass
        (``_speedups.forward_columns``): (tag, its ``chunk`` option, the chunks), the same chunks
        :meth:`chunks` makes of the decoded message's records with ``base_of(tag)`` as the base
        origin. None when that pass leaves the message to the decoder (not the usual Forward or
        PackedForward shape, a record that needs a decision of its own, labels that cannot be)."""
        if _speedups is None:
            return None
        keys = (self._message_keys, self._level_keys, self._slow_keys)
        got = _speedups.forward_columns(message, *keys, self._level_cache, _MAX_DISTINCT_LABELS)
        if got is None:
            return None
        tag, option, groups = got
        base = base_of(tag)
        now = time.time_ns()
        chunks = []
        for labels, lines, levels, stamps, meta in groups:
            try:
                origin = base if labels is None else self.origin({"labels": labels}, 1, base)
            except _Invalid:
                return None
            chunk = Chunk(origin, lines, read_time_ns=now)
            chunk.timestamps = stamps
            if levels is not None:
                chunk.preset_levels = levels
            if meta is not None:
                chunk.meta = cast("list[dict[str, Any] | None]", meta)
            chunks.append(chunk)
        return tag, option.get("chunk") if option is not None else None, chunks

    def _uniform(self, items: list[Item], base: Origin | None) -> list[Chunk] | None:
        """The chunks of ``items`` when every one is a valid record with the same members, the
        level member present or not (what one client's batch usually is): each rule is decided
        once for the batch, and a record costs a few lookups. None when that does not hold (a
        rejected item, a member that needs a record-by-record decision): :meth:`chunks` then
        goes record by record, with the same result."""
        if not items or isinstance(items[0], Rejected):
            return None
        events = cast("list[tuple[dict[str, Any], int | None]]", items)
        if _speedups is not None:
            # The same decisions in one pass in C (None: what it leaves to the code below).
            cols = _speedups.uniform_columns(
                events, self._message_keys, self._level_keys, self._slow_keys, self._level_cache
            )
            if cols is not None:
                c_lines, c_levels, c_meta, c_stamps, labelled = cols
                return self._columns_to_chunks(events, base, c_lines, c_levels, c_meta, labelled, c_stamps)
        # Each test below is one pass in C over the batch (map, count, set union), not a Python
        # step per record.
        if set(map(type, events)) != {tuple}:
            return None
        recs = [item[0] for item in events]
        n = len(recs)
        members = set().union(*recs)
        level_key = next((k for k in self._level_keys if k in members), None)
        keys = set(recs[0])
        keys.discard(level_key)
        if not keys.isdisjoint(self._slow_keys) or not keys.isdisjoint(self._level_keys):
            return None
        size = len(keys)
        values: list[Any] = []
        # Every record has exactly ``keys`` (and the level member or not): no record has a member
        # outside them, and no record misses one (a record's size is at most what it may hold,
        # so the sizes add up only if each is that).
        if level_key is None:
            if members != keys or sum(map(len, recs)) != n * size:
                return None
        else:
            values = [r.get(level_key, _ABSENT) for r in recs]
            if not members <= keys | {level_key}:
                return None
            if sum(map(len, recs)) != n * size + n - values.count(_ABSENT):
                return None
        message_key = next((k for k in self._message_keys if k in keys), None)
        if message_key is None:
            return None
        lines = uniform_lines([r[message_key] for r in recs])
        if lines is None:
            return None
        levels: list[str | None] | None = None
        if level_key is not None:
            cache = self._level_cache
            try:
                levels = [None if v is _ABSENT else cache[v] for v in values]
            except (KeyError, TypeError):
                for value in values:
                    if value is _ABSENT:
                        continue
                    level = level_of(value)
                    if not level:
                        return None  # stays in fields: record by record
                    with contextlib.suppress(TypeError):
                        if len(cache) >= MAX_ORIGINS:
                            cache.clear()
                        cache[value] = level
                levels = [None if v is _ABSENT else cache[v] for v in values]
        extra = [k for k in recs[0] if k in keys and k not in (message_key, "labels")]
        meta: list[dict[str, Any] | None] | None = None
        if extra:
            meta = [{k: r[k] for k in extra} for r in recs]
        stamps = [item[1] for item in events]
        return self._columns_to_chunks(events, base, lines, levels, meta, "labels" in keys, stamps)

    def _columns_to_chunks(
        self,
        events: list[tuple[dict[str, Any], int | None]],
        base: Origin | None,
        lines: list[str],
        levels: list[str | None] | None,
        meta: list[dict[str, Any] | None] | None,
        labelled: bool,
        stamps: list[int | None],
    ) -> list[Chunk] | None:
        """The chunks of a uniform batch's columns: one per origin (None: labels that cannot be,
        decided record by record)."""
        n = len(lines)
        if base is None:
            base = self.default
        # The records' indexes by origin, in the order of their first record.
        groups: list[tuple[Origin, list[int]]]
        if labelled:
            try:
                groups = self._by_labels(events, base)
            except _Invalid:
                return None
        else:
            groups = [(base, list(range(n)))]
        now = time.time_ns()
        untimed = stamps.count(None)
        out = []
        for origin, idx in groups:
            whole = len(idx) == n
            pick = None if whole else _picker(idx)
            chunk = Chunk(origin, lines if pick is None else pick(lines), read_time_ns=now)
            if meta is not None:
                chunk.meta = meta if pick is None else pick(meta)
            if levels is not None:
                group_levels = levels if pick is None else pick(levels)
                if group_levels.count(None) != len(group_levels):
                    chunk.preset_levels = group_levels
            if untimed != n:
                group_stamps = stamps[:] if pick is None else pick(stamps)
                if not untimed:
                    chunk.timestamps = cast("list[int]", group_stamps)
                elif group_stamps.count(None) != len(group_stamps):
                    chunk.timestamps = [now if st is None else st for st in group_stamps]
            out.append(chunk)
        return out

    def _by_labels(
        self, events: list[tuple[dict[str, Any], int | None]], base: Origin
    ) -> list[tuple[Origin, list[int]]]:
        """The indexes of the records of ``events`` by origin (records with ``labels``, and no
        ``source_type`` or ``source_id``): each distinct set of labels is looked up once.
        _Invalid for labels that cannot be (as :meth:`origin` says)."""
        found = _speedups.label_groups(events, _MAX_DISTINCT_LABELS) if _speedups is not None else None
        if found is not None:
            # In C, without a tuple (or a step) per record (labels of text only, so many sets).
            if len(found) == 1:
                return [(self.origin(events[0][0], 1, base), found[0][1])]
            return self._origins_of(events, base, [idx for _, idx in found])
        recs = [item[0] for item in events]
        try:
            label_keys = [tuple(r["labels"].items()) for r in recs]
            distinct = dict.fromkeys(label_keys)
        except (AttributeError, TypeError):  # labels that are not an object, or hold a list
            label_keys = []
        if not label_keys or len(distinct) > _MAX_DISTINCT_LABELS:
            by_id: dict[int, tuple[Origin, list[int]]] = {}
            for i, r in enumerate(recs):
                origin = self.origin(r, i + 1, base)
                group = by_id.get(id(origin))
                if group is None:
                    group = by_id[id(origin)] = (origin, [])
                group[1].append(i)
            return list(by_id.values())
        if len(distinct) == 1:
            return [(self.origin(recs[0], 1, base), list(range(len(recs))))]
        indexes: dict[tuple[Any, ...], list[int]] = {k: [] for k in distinct}
        for i, k in enumerate(label_keys):
            indexes[k].append(i)
        return self._origins_of(events, base, list(indexes.values()))

    def _origins_of(
        self, events: list[tuple[dict[str, Any], int | None]], base: Origin, sets: list[list[int]]
    ) -> list[tuple[Origin, list[int]]]:
        """The origin of each set of records with the same labels (its indexes, in order)."""
        # One origin per distinct set, from its first record (the same origin as each of its
        # records would get: origins are kept by the labels' items).
        by_origin: dict[int, tuple[Origin, list[int]]] = {}
        for idx in sets:
            origin = self.origin(events[idx[0]][0], idx[0] + 1, base)
            group = by_origin.get(id(origin))
            if group is None:
                by_origin[id(origin)] = (origin, idx)
            else:  # pragma: no cover - distinct labels make distinct origins
                group[1].extend(idx)
                group[1].sort()
        return list(by_origin.values())

    def _add(
        self,
        groups: dict[int, Group],
        i: int,
        rec: dict[str, Any],
        event_ns: int | None,
        base: Origin | None,
    ) -> None:
        message, message_key = self._message(rec, i)
        origin = self.origin(rec, i, base)
        fields = rec.get("fields")
        if fields is not None and not isinstance(fields, dict):
            raise _Invalid(INVALID_FIELD, f"record {i}: 'fields' must be an object, not {_kind(fields)}")
        stamp, time_key = event_ns, None
        for key in self._time_keys:
            value = rec.get(key)
            if value is not None and (ns := time_ns(value)) is not None:
                stamp, time_key = ns, key
                break
        level = level_key = None
        for key in self._level_keys:
            value = rec.get(key)
            if value is not None and (found := level_of(value)):
                level, level_key = found, key
                break
        # Every other member goes to fields (the record's own `fields` win).
        taken = 1 + (time_key is not None) + (level_key is not None)
        if len(rec) > taken:
            skip = {message_key, time_key, level_key, *HTTP_RECORD_MEMBERS}
            extra = {k: v for k, v in rec.items() if k not in skip}
            if extra:
                fields = {**extra, **fields} if fields else extra
        group = groups.get(id(origin))
        if group is None:
            group = groups[id(origin)] = Group(origin)
        group.lines.append(message)
        group.fields.append(fields or None)
        group.levels.append(level)
        group.stamps.append(stamp)

    def _message(self, rec: dict[str, Any], i: int) -> tuple[str, str]:
        """The message of record ``i`` and the member it is in."""
        for key in self._message_keys:
            message = rec.get(key)
            if message is not None:
                break
        else:
            raise _Invalid(
                MISSING_MESSAGE,
                f"record {i}: no message: none of {self._message_list} is there ({self.section}.message_key)",
            )
        if not isinstance(message, str):
            raise _Invalid(INVALID_FIELD, f"record {i}: '{key}' must be text, not {_kind(message)}")
        if message.endswith("\n"):
            message = message[:-2] if message.endswith("\r\n") else message[:-1]
        if not message.strip():
            raise _Invalid(EMPTY_MESSAGE, f"record {i}: '{key}' is empty")
        return message, key

    def _labels(self, value: Any, i: int, base: dict[str, str]) -> dict[str, str]:
        if value is None:
            return dict(base)
        if not isinstance(value, dict):
            raise _Invalid(INVALID_FIELD, f"record {i}: 'labels' must be an object, not {_kind(value)}")
        for k, v in value.items():
            if not isinstance(v, str):
                raise _Invalid(INVALID_FIELD, f"record {i}: label '{k}' must be a string, not {_kind(v)}")
        return {**base, **value}


def _text(value: Any, key: str, i: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _Invalid(INVALID_FIELD, f"record {i}: '{key}' must be a non-empty string")
    return value


def park_rejected(
    rejected: list[Rejected],
    dlq: DeadLetterStore | None,
    skip_empty: bool,
    counter: Counter_,
    failed_sink: str,
    empty_reason: str = EMPTY_MESSAGE,
) -> tuple[list[tuple[Rejected, str]], str]:
    """Park ``rejected`` records in the local DLQ (``failed_sink``, ``error_type:
    invalid_record``, no topic; those rejected as ``empty_reason`` skipped instead with
    ``skip_empty``) and count them in ``counter`` by reason and outcome. A durable write: not on
    an event loop. Returns each with its outcome, and why the DLQ could not take them ('' if it
    could)."""
    to_park = [r for r in rejected if not (skip_empty and r.reason == empty_reason)]
    outcome, dlq_error = PARKED, ""
    if to_park:
        try:
            if dlq is None:
                raise DLQWriteError(0, "the local DLQ is disabled (dispatcher.dlq_config.enabled: false)")
            dlq.park([DLQEntry(r.original, r.error, "invalid_record", failed_sink) for r in to_park])
        except DLQWriteError as exc:
            outcome, dlq_error = DROPPED, str(exc)
    parked = {id(r) for r in to_park}
    outcomes = [(r, outcome if id(r) in parked else SKIPPED) for r in rejected]
    for (reason, result), n in Counter((r.reason, o) for r, o in outcomes).items():
        counter.labels(reason, result).inc(n)
    return outcomes, dlq_error


def _reply(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


class _RejectionLog:
    """Logs rejected records at most once per :data:`REJECT_LOG_INTERVAL`, with an example; those
    that come in between are summed up in the next line (on the event loop's timer). Used by
    ``http_ingest``, ``forward`` and ``otlp``: ``what`` names the source, ``batches`` what records
    come in, ``records`` what they are."""

    def __init__(
        self, what: str = "HTTP ingest", batches: str = "requests", records: str = "records"
    ) -> None:
        self._what = what
        self._batches = batches
        self._records = records
        self._last = float("-inf")
        self._pending: Counter[tuple[str, str]] = Counter()
        self._example = ""
        self._dlq_error = ""
        self._timer: asyncio.TimerHandle | None = None

    def add(
        self, loop: asyncio.AbstractEventLoop, outcomes: list[tuple[Rejected, str]], dlq_error: str
    ) -> None:
        for r, outcome in outcomes:
            self._pending[(r.reason, outcome)] += 1
        if not self._example:
            self._example = outcomes[0][0].error
        if dlq_error:
            self._dlq_error = dlq_error
        due = self._last + REJECT_LOG_INTERVAL
        if loop.time() >= due:
            self._flush(loop)
        elif self._timer is None:
            self._timer = loop.call_at(due, self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if not self._pending:
            return
        self._last = loop.time()
        total = sum(self._pending.values())
        parts = ", ".join(f"{n} {reason} {outcome}" for (reason, outcome), n in self._pending.most_common())
        dlq = f"; the DLQ could not take them: {self._dlq_error}" if self._dlq_error else ""
        log.warning(
            "%s rejected %d %s (%s), the others of their %s were shipped; e.g. %s%s",
            self._what,
            total,
            self._records,
            parts,
            self._batches,
            self._example,
            dlq,
            extra={"rejected": total},
        )
        self._pending.clear()
        self._example = self._dlq_error = ""


class HttpIngest(Receiver[HttpIngestConfig]):
    """The ``POST /api/v1/logs`` handler, served by the API server (no thread of its own)."""

    name = "http_ingest"

    def __init__(
        self,
        config: HttpIngestConfig,
        dispatcher: Dispatcher,
        metrics: Metrics,
        dlq: DeadLetterStore | None = None,
    ) -> None:
        super().__init__(config, dispatcher, metrics, dlq)
        self.records = Records(config)
        self.accepted = 0
        self.rejected = 0
        self._rejections = _RejectionLog()

    def start(self) -> None:
        """Nothing to start: the API server serves :meth:`routes`."""

    def stop(self, timeout: float) -> None:
        """Nothing to stop: a request in progress is answered; the API server stops last."""

    def finish(self) -> None:
        """Nothing to save."""

    def routes(self) -> list[tuple[str, Handler]]:
        return [(PATH, self.handle)]

    def health(self) -> dict[str, Any]:
        """The source's state for ``/health`` (see :meth:`Supervisor.health`)."""
        return {**self.supervisor.health(), "path": PATH}

    def stats(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected}

    async def handle(self, request: web.Request) -> web.Response:
        close = False
        try:
            status, body, headers = await self._handle(request)
            self.supervisor.ok()
        except IngestError as exc:
            status, body, headers = exc.status, {"status": "rejected", "error": exc.reason}, None
            close = exc.close
            self.supervisor.ok()
        except Exception as exc:
            self.supervisor.crashed(exc, "answered 500")
            error = f"internal error ({describe(exc)}); some records may have been queued"
            status, body, headers = 500, {"status": "error", "error": error}, None
        self.metrics.http_ingest_requests.labels(str(status)).inc()
        response = _reply(status, body, headers)
        if close:
            response.force_close()
        return response

    async def _handle(self, request: web.Request) -> tuple[int, dict[str, Any], dict[str, str] | None]:
        cfg = self.config
        data = await self._read(request)
        loop = asyncio.get_running_loop()
        # In the executor too: a 10 MiB body is tens of thousands of records, a quarter of a second
        # the loop would otherwise not answer /health or /metrics.
        # Parsed and queued in one trip to the executor, the chunks handed to the dispatcher
        # together; the loop is woken once when the last of them is acknowledged.
        chunks, rejected, queued, closed = await loop.run_in_executor(
            None, self._records_submit, data, request.headers.get("Content-Type", "")
        )
        total = sum(len(c.lines) for c in chunks)
        accepted = sum(len(c.lines) for c in chunks[:queued])
        if closed:
            raise IngestError(503, "the agent is stopping; retry on another instance or later")
        if queued < len(chunks):
            return 429, self._full(accepted, total), {"Retry-After": "1"}
        self.accepted += accepted
        answer: dict[str, Any] = {"status": "accepted", "accepted": accepted, "rejected": len(rejected)}
        if rejected:
            # Only once the good records are queued: a request refused with 429 parks nothing, so
            # the client's resend parks each bad record once.
            outcomes, dlq_error = await loop.run_in_executor(None, self._reject, rejected)
            self._rejections.add(loop, outcomes, dlq_error)
            answer.update(self._described(outcomes, dlq_error))
        if cfg.acknowledgements and queued:
            try:
                await asyncio.wait_for(all_acked_future(loop, chunks), cfg.ack_timeout)
            except TimeoutError:
                answer.update(
                    status="timeout",
                    error=f"records queued but not acknowledged by the sinks within "
                    f"{cfg.ack_timeout:g}s; they may still be delivered (resending is at-least-once)",
                )
                return 503, answer, {"Retry-After": "5"}
        return 200, answer, None

    def _records(self, data: bytes, content_type: str) -> tuple[list[Chunk], list[Rejected]]:
        return self.records.chunks(parse_body(data, content_type))

    def _records_submit(
        self, data: bytes, content_type: str
    ) -> tuple[list[Chunk], list[Rejected], int, bool]:
        """In the executor: parse a body and queue its chunks (``queue_timeout`` at most).
        Returns the chunks, the rejected records, how many chunks were queued (the first ones)
        and whether the agent is stopping."""
        chunks, rejected = self._records(data, content_type)
        total = sum(len(c.lines) for c in chunks)
        self.metrics.source_lines_received.labels("http_ingest", "http").inc(total + len(rejected))
        queued, closed = self.dispatcher.submit_request(chunks, self.config.queue_timeout)
        return chunks, rejected, queued, closed

    def _reject(self, rejected: list[Rejected]) -> tuple[list[tuple[Rejected, str]], str]:
        """Park ``rejected`` in the local DLQ (empty messages are skipped instead with
        ``empty_messages: skip``) and count them. Runs in the executor: parking is a durable write.
        Returns each with its outcome, and why the DLQ could not take them ('' if it could)."""
        skip = self.config.empty_messages == "skip"
        counter = self.metrics.http_ingest_records_rejected
        outcomes, dlq_error = park_rejected(rejected, self.dlq, skip, counter, NAME)
        self.rejected += len(rejected)
        return outcomes, dlq_error

    @staticmethod
    def _described(outcomes: list[tuple[Rejected, str]], dlq_error: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rejected_by_reason": dict(Counter(r.reason for r, _ in outcomes)),
            "errors": [
                {"record": r.number, "reason": r.reason, "error": r.error, "outcome": o}
                for r, o in outcomes[:MAX_ERRORS]
            ],
        }
        if dlq_error:
            out["dlq_error"] = dlq_error
        return out

    @staticmethod
    def _full(accepted: int, total: int) -> dict[str, Any]:
        if not accepted:
            return {
                "status": "rejected",
                "accepted": 0,
                "error": "the dispatcher queue is full; nothing was queued, retry later",
            }
        return {
            "status": "partial",
            "accepted": accepted,
            "error": f"the dispatcher queue is full: {accepted} of {total} records were queued "
            "(whole sources, in request order); retry the rest later",
        }

    async def _read(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes
        too_large = IngestError(413, f"the body is larger than http_ingest.max_body_bytes ({limit} bytes)")

        def unreadable(why: str) -> IngestError:
            return IngestError(
                400,
                f"{why}; send it compressed as Content-Encoding says, or without Content-Encoding",
                close=True,
            )

        return await read_body(request, limit, too_large, unreadable)


def build(config: HttpIngestConfig, ctx: BuildContext) -> HttpIngest | None:
    """Served on the API server: nothing to build when it is off."""
    if not (config.enabled and ctx.config.server.enabled):
        return None
    return HttpIngest(config, ctx.dispatcher, ctx.metrics, ctx.dlq)


COMPONENT = SourceComponent(build=build, stats_key="http_ingest", idle_stats={"accepted": 0, "rejected": 0})
