"""What a push carries: records shaped into Loki entries (stream labels, timestamp, line, structured
metadata, tenant), and the request body (protobuf + snappy, or JSON).

No network and no threads here: :class:`Shaper` runs in the dispatcher threads (its stream table
is shared, under a lock), :func:`encode` in the service's thread.

The protobuf body is Loki's ``logproto.PushRequest``, written by hand (three small messages, so
no generated code and no protobuf runtime)::

    PushRequest   { repeated StreamAdapter streams = 1; }
    StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2; }
    EntryAdapter  { Timestamp timestamp = 1; string line = 2; repeated LabelPair structuredMetadata = 3; }
    LabelPair     { string name = 1; string value = 2; }
    Timestamp     { int64 seconds = 1; int32 nanos = 2; }

compressed with snappy's block format (cramjam), as Promtail sends it.
"""

from __future__ import annotations

import calendar
import copy
import gzip
import operator
import re
import threading
import time
from collections.abc import Iterable
from typing import Any, cast

import cramjam
import orjson

try:
    from log_capturer import _speedups
except ImportError:  # pragma: no cover - an install without a C compiler
    # Typed as the module (``_speedups.pyi``); None picks the Python code at each use.
    _speedups = cast(Any, None)

from log_capturer.engine.contract import Record, Refused
from log_capturer.record import Chunk
from log_capturer.sinks.encoding import DocEncoder, rfc3339_ns
from log_capturer.sinks.kafka.encode import encode_chunk
from log_capturer.sinks.loki.config import LokiSinkConfig

#: The label an entry gets instead of its own when it would create a stream past ``max_streams``.
OVERFLOW_LABEL = "stream_overflow"
_INVALID_LABEL_CHAR = re.compile(r"[^A-Za-z0-9_]")
_TS_PREFIX = b'{"timestamp":"'


class LazyValues:
    """A chunk's JSON records (as Kafka gets them), encoded when one is first asked for: an entry
    whose line is its message needs its record only when it is parked or sent again."""

    __slots__ = ("_values", "chunk", "key_field", "n")

    def __init__(self, chunk: Chunk, key_field: str | None) -> None:
        self.chunk = chunk
        self.key_field = key_field
        self.n = len(chunk.lines)
        self._values: list[bytes] | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> bytes:
        values = self._values
        if values is None:  # two threads may both encode: the same bytes
            values = self._values = self._encode()
        return values[i]

    def _encode(self) -> list[bytes]:
        chunk = self.chunk
        try:
            return encode_chunk(chunk, self.key_field)
        except (TypeError, ValueError):
            # Text the record encoder refuses (lone surrogates: a file's undecodable bytes): the
            # lines as their entries carry them (backslashreplace), so the record still exists.
            twin = copy.copy(chunk)
            twin.lines = [ln.encode("utf-8", "backslashreplace").decode() for ln in chunk.lines]
            try:
                return encode_chunk(twin, self.key_field)
            except (TypeError, ValueError):  # in the fields too: the line and its origin
                origin = chunk.origin
                return [
                    orjson.dumps(
                        {"message": ln, "source_type": origin.source_type, "source_id": origin.source_id}
                    )
                    for ln in twin.lines
                ]


class Entry:
    """One record as a Loki entry, and what its outcome is reported to."""

    __slots__ = (
        "_value",
        "dest",
        "entry_id",
        "index",
        "kind",
        "line",
        "meta",
        "owner",
        "rewritten",
        "size",
        "stream",
        "tenant",
        "ts",
    )

    def __init__(
        self,
        value: bytes | LazyValues,
        dest: str,
        ts: int,
        line: bytes,
        stream: str,
        tenant: str,
        meta: tuple[tuple[str, str], ...] | None = None,
    ) -> None:
        #: The JSON record (as Kafka gets it; or the chunk's LazyValues, the record at ``index``)
        #: and its destination: what is parked or replayed.
        self._value: bytes | LazyValues = value
        self.index = 0
        self.dest = dest
        self.ts = ts
        self.line = line
        self.stream = stream
        self.tenant = tenant
        self.meta = meta
        self.size = len(line) + len(stream) + 32
        if meta:
            self.size += sum(len(k) + len(v) + 4 for k, v in meta)
        #: "new" (a chunk's record; owner: its Delivery), "attempt" (owner: the engine's Attempt),
        #: "replay" (owner: the replay call waiting for it).
        self.kind = "new"
        self.owner: Any = None
        self.entry_id = ""
        #: Sent again stamped now after Loki refused its timestamp (out_of_order_action).
        self.rewritten = False

    @property
    def value(self) -> bytes:
        """The JSON record (encoded now when the entry was made without it)."""
        value = self._value
        if type(value) is bytes:
            return value
        assert isinstance(value, LazyValues)
        return value[self.index]

    @property
    def lazy(self) -> bool:
        """Made without its record (encoded when asked for)."""
        return type(self._value) is not bytes

    @property
    def record(self) -> Record:
        """The record, as the engine parks or retries it."""
        return Record(self.dest, self.value, None)


def label_name(name: str) -> str:
    """A source label's name as a Loki label name (other characters become '_')."""
    out = _INVALID_LABEL_CHAR.sub("_", name)
    if not out or out[0].isdigit():
        out = "_" + out
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels_text(labels: dict[str, str]) -> str:
    """Loki's text form of a label set: ``{a="1", b="2"}``, names sorted."""
    return "{" + ", ".join(f'{k}="{_escape(labels[k])}"' for k in sorted(labels)) + "}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def field_of(doc: dict[str, Any], ref: str) -> Any:
    """The value of a field reference (``level``, ``labels.app``, ``fields.user``...) in a record."""
    head, _, name = ref.partition(".")
    if not name:
        return doc.get(head)
    inner = doc.get(head)
    return inner.get(name) if isinstance(inner, dict) else None


_SECONDS: dict[bytes, int] = {}


def parse_timestamp(text: bytes) -> int:
    """Nanoseconds of the record's RFC 3339 UTC timestamp (``2026-01-02T03:04:05.123456789Z``)."""
    head = text[:19]
    sec = _SECONDS.get(head)
    if sec is None:
        sec = calendar.timegm(time.strptime(head.decode(), "%Y-%m-%dT%H:%M:%S"))
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        _SECONDS[head] = sec
    frac = text[20:-1] if len(text) > 20 and text[19:20] == b"." else b""
    nanos = int(frac.ljust(9, b"0")[:9]) if frac else 0
    return sec * 1_000_000_000 + nanos


class Shaper:
    """Records into entries as ``sinks.loki`` says; the stream table and its ``max_streams`` guard.

    Thread-safe: dispatcher threads shape chunks at once (only the stream table is shared)."""

    def __init__(self, config: LokiSinkConfig) -> None:
        self.config = config
        self.destination = config.destination
        self.static = dict(config.default_labels)
        self.label_refs = [(name, ref) for name, ref in config.label_fields.items()]
        self.meta_refs = list(config.structured_metadata)
        self.max_streams = config.max_streams
        self._streams: dict[tuple[str, str], dict[str, str]] = {}
        self._by_text: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self.overflow_stream = labels_text({**self.static, OVERFLOW_LABEL: "true"})
        self._overflow_labels = {**self.static, OVERFLOW_LABEL: "true"}
        #: Entries sent under the overflow stream (the sink counts and logs them).
        self.overflowed = 0
        self.max_age_ns = int(config.timestamp_learning.default_max_age * 1e9)
        # The line: ``encoding`` (or ``line_format``, its short form), from the parsed record.
        line_encoding = config.line_encoding
        self.line_encoder = DocEncoder(line_encoding, entry_time=True)
        # The line needs the parsed record only when it is not the record as it is.
        self._plain = line_encoding.envelope and not self.meta_refs
        # Labels and tenant from the chunk's origin and levels alone (no record parsed), unless
        # a field or the message is referred to.
        refs = [ref for _n, ref in self.label_refs] + ([config.tenant_field] if config.tenant_field else [])
        self._message_only = line_encoding.codec == "raw" and not self.meta_refs
        self._from_origin = (self._plain or self._message_only) and not any(
            r == "message" or r.startswith("fields.") for r in refs
        )

    # -- the stream table ----------------------------------------------------------------------
    def labels_of(self, stream: str) -> dict[str, str]:
        """The label set of a stream known to the table (for JSON bodies)."""
        if stream == self.overflow_stream:
            return self._overflow_labels
        return self._by_text.get(stream, self.static)

    def streams(self) -> int:
        return len(self._streams)

    def _stream(self, tenant: str, labels: dict[str, str]) -> str:
        text = labels_text(labels)
        key = (tenant, text)
        if key in self._streams:
            return text
        with self._lock:
            if key in self._streams:
                return text
            if len(self._streams) >= self.max_streams:
                self.overflowed += 1
                return self.overflow_stream
            self._streams[key] = labels
            self._by_text[text] = labels
        return text

    # -- shaping ---------------------------------------------------------------------------------
    def labels_for(self, doc: dict[str, Any]) -> dict[str, str]:
        labels = dict(self.static)
        if self.config.source_labels:
            src = doc.get("labels")
            if isinstance(src, dict):
                for k, v in src.items():
                    text = _text(v)
                    if text:
                        labels[label_name(str(k))] = text
        for name, ref in self.label_refs:
            text = _text(field_of(doc, ref))
            if text:
                labels[name] = text
        return labels

    def tenant_of(self, doc: dict[str, Any]) -> str:
        if self.config.tenant_field:
            text = _text(field_of(doc, self.config.tenant_field))
            if text:
                return text
        return self.config.tenant_id

    def line_and_meta(
        self, value: bytes, doc: dict[str, Any]
    ) -> tuple[bytes, tuple[tuple[str, str], ...] | None]:
        if self._plain:
            return _without_timestamp(value), None
        meta: tuple[tuple[str, str], ...] | None = None
        if self.meta_refs:
            pairs = []
            doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in doc.items()}
            for ref in self.meta_refs:
                head, _, name = ref.partition(".")
                value = field_of(doc, ref)
                if value is None:
                    continue
                pairs.append((label_name(ref.replace(".", "_")) if name else head, _text(value)))
                if name:
                    doc[head].pop(name, None)
                else:
                    doc.pop(head, None)
            meta = tuple(pairs) or None
        return self.line_encoder.encode(doc), meta

    def entry_of(self, record: Record, doc: dict[str, Any] | None = None) -> Entry:
        """A record (its JSON value, as Kafka gets it) as an entry."""
        if doc is None:
            doc = orjson.loads(record.value)
        ts_text = doc.get("timestamp")
        ts = parse_timestamp(ts_text.encode()) if isinstance(ts_text, str) and ts_text else time.time_ns()
        tenant = self.tenant_of(doc)
        line, meta = self.line_and_meta(record.value, doc)
        stream = self._stream(tenant, self.labels_for(doc))
        return Entry(record.value, record.topic, ts, line, stream, tenant, meta)

    def _fast_entries(self, chunk: Chunk, values: list[bytes] | LazyValues) -> tuple[list[Entry], int]:
        """Entries from what the chunk knows (origin, levels, timestamps): one stream per level;
        and the length of the longest stream's labels."""
        origin = chunk.origin
        dest = self.destination
        streams: dict[str, tuple[str, str]] = {}
        for level in set(chunk.levels):
            doc = {
                "level": level,
                "source_type": origin.source_type,
                "source_id": origin.source_id,
                "labels": origin.labels,
            }
            tenant = self.tenant_of(doc)
            stream = self._stream(tenant, self.labels_for(doc))
            if stream == self.overflow_stream:  # counted once: count every entry of the level
                with self._lock:
                    self.overflowed += chunk.levels.count(level) - 1
            streams[level] = (stream, tenant)
        widest = max(len(st) for st, _t in streams.values()) if streams else 0
        return self._fast_lines(chunk, values, streams, dest), widest

    def _fast_lines(
        self, chunk: Chunk, values: list[bytes] | LazyValues, streams: dict[str, tuple[str, str]], dest: str
    ) -> list[Entry]:
        if _speedups is not None:  # the same entries, made in C (no Python code per line)
            return _speedups.loki_entries(
                Entry,
                values,
                chunk.lines if self._message_only else None,
                chunk.timestamps,
                chunk.read_time_ns,
                chunk.levels,
                streams,
                dest,
            )
        return self._fast_lines_py(chunk, values, streams, dest)

    def _fast_lines_py(
        self, chunk: Chunk, values: list[bytes] | LazyValues, streams: dict[str, tuple[str, str]], dest: str
    ) -> list[Entry]:
        """The entries of a chunk on the fast path: the reference for ``_speedups.loki_entries``."""
        if self._message_only:  # the line is the message: the chunk's own line
            stamps = chunk.timestamps or [chunk.read_time_ns] * len(values)
            if isinstance(values, LazyValues):  # each entry's record: the chunk's, at its index
                out = [
                    Entry(values, dest, ts, line.encode("utf-8", "backslashreplace"), *streams[level])
                    for line, ts, level in zip(chunk.lines, stamps, chunk.levels, strict=True)
                ]
                for i, e in enumerate(out):
                    e.index = i
                return out
            return [
                Entry(value, dest, ts, line.encode("utf-8", "backslashreplace"), *streams[level])
                for value, line, ts, level in zip(values, chunk.lines, stamps, chunk.levels, strict=True)
            ]
        assert not isinstance(values, LazyValues)  # lazy only where the line is the message
        if chunk.timestamps is None:
            # Every record starts with the same timestamp member: cut it by its length.
            ts = chunk.read_time_ns
            cut = len(_TS_PREFIX) + len(rfc3339_ns(ts)) + 1  # up to the comma after it
            return [
                Entry(value, dest, ts, b"{" + value[cut + 1 :], *streams[level])
                if value[cut : cut + 1] == b","
                else Entry(value, dest, ts, _without_timestamp(value), *streams[level])
                for value, level in zip(values, chunk.levels, strict=True)
            ]
        return [
            Entry(value, dest, ts, _without_timestamp(value), *streams[level])
            for value, ts, level in zip(values, chunk.timestamps, chunk.levels, strict=True)
        ]

    @property
    def lazy_values(self) -> bool:
        """Whether ``entries`` takes the chunk's records as :class:`LazyValues` (the line is the
        message and the labels come from the origin: no record is read)."""
        return self._message_only and self._from_origin

    def entries(self, chunk: Chunk, values: list[bytes] | LazyValues) -> tuple[list[Entry], list[Refused]]:
        """A chunk's entries (from its JSON records), and the records refused before sending (too
        large, too old)."""
        refused: list[Refused] = []
        limit = self.config.max_request_size
        cutoff, clamp = self.age_cutoff()
        if isinstance(values, LazyValues) and not (self.lazy_values and len(chunk.levels) == len(values)):
            values = [values[i] for i in range(len(values))]
        if self._from_origin and len(chunk.levels) == len(values):
            shaped, widest = self._fast_entries(chunk, values)
            if isinstance(values, LazyValues):
                longest = max(map(_SIZE, shaped), default=32) - 32
            else:
                # Lines are never longer than their records: the longest record bounds every size.
                longest = max(map(len, values), default=0) + widest
            stamps_ok = (
                not cutoff
                or (chunk.timestamps is None and chunk.read_time_ns >= cutoff)
                or all(e.ts >= cutoff for e in shaped)
            )
            if stamps_ok and (longest + 32 <= limit or all(e.size <= limit for e in shaped)):
                return shaped, refused
        else:
            assert not isinstance(values, LazyValues)  # made a list above
            shaped = [self.entry_of(Record(self.destination, v, None)) for v in values]
        out: list[Entry] = []
        for entry in shaped:
            if entry.size > limit:
                refused.append(
                    Refused(
                        entry.record,
                        "too_large",
                        f"the entry is {entry.size} bytes, more than max_request_size={limit}",
                    )
                )
                continue
            if cutoff and entry.ts < cutoff:
                if clamp:
                    entry.ts = time.time_ns()
                    entry.rewritten = True
                else:
                    refused.append(Refused(entry.record, "timestamp_too_old", self.too_old_text(entry.ts)))
                    continue
            out.append(entry)
        return out, refused

    def age_cutoff(self) -> tuple[int, bool]:
        """The oldest timestamp (ns) an entry may have (0: no check), and whether to clamp."""
        tl = self.config.timestamp_learning
        if not tl.enabled or self.max_age_ns <= 0:
            return 0, False
        return time.time_ns() - self.max_age_ns, tl.clamp_enabled

    def too_old_text(self, ts: int) -> str:
        age = (time.time_ns() - ts) / 1e9
        return (
            f"timestamp too old: the entry is {age:.0f}s old and Loki takes entries up to "
            f"{self.max_age_ns / 1e9:.0f}s old (timestamp_learning)"
        )


def _without_timestamp(value: bytes) -> bytes:
    """The JSON record without its leading ``timestamp`` member (the entry carries it)."""
    if value.startswith(_TS_PREFIX):
        end = value.find(b'",', len(_TS_PREFIX))
        if end > 0:
            return b"{" + value[end + 2 :]
    return value


# -- the body --------------------------------------------------------------------------------------


def _varint_of(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


#: The varints of 0 .. 16383 (lengths of lines and entries are nearly always below).
_VARINTS = [_varint_of(i) for i in range(1 << 14)]


def _varint(n: int) -> bytes:
    return _VARINTS[n] if n < 16384 else _varint_of(n)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def group(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """Entries by stream, each stream's in timestamp order (stable: equal times keep their order)."""
    streams: dict[str, list[Entry]] = {}
    for e in entries:
        lst = streams.get(e.stream)
        if lst is None:
            streams[e.stream] = [e]
        else:
            lst.append(e)
    for lst in streams.values():
        lst.sort(key=_TS)
    return streams


_TS = operator.attrgetter("ts")
_SIZE = operator.attrgetter("size")


def protobuf_body(streams: dict[str, list[Entry]]) -> bytes:
    """A ``PushRequest``, uncompressed (in C when the module is built)."""
    if _speedups is not None:
        return _speedups.loki_protobuf(Entry, streams)
    return protobuf_body_py(streams)


def protobuf_body_py(streams: dict[str, list[Entry]]) -> bytes:
    """A ``PushRequest``, uncompressed: the reference for ``_speedups.loki_protobuf``."""
    parts: list[bytes] = []
    stamps: dict[int, bytes] = {}
    v = _VARINTS
    for labels, entries in streams.items():
        lb = labels.encode()
        body: list[bytes] = [b"\x0a", _varint(len(lb)), lb]
        extend = body.extend
        for e in entries:
            stamp = stamps.get(e.ts)
            if stamp is None:
                sec, nanos = divmod(e.ts, 1_000_000_000)
                stamp = stamps[e.ts] = _field(0x0A, b"\x08" + _varint(sec) + b"\x10" + _varint(nanos))
            line = e.line
            n = len(line)
            if e.meta or n >= 16000:
                entry = stamp + _field(0x12, line)
                if e.meta:
                    for name, value in e.meta:
                        entry += _field(0x1A, _field(0x0A, name.encode()) + _field(0x12, value.encode()))
                extend((b"\x12", _varint(len(entry)), entry))
                continue
            ln = v[n]
            extend((b"\x12", v[len(stamp) + 1 + len(ln) + n], stamp, b"\x12", ln, line))
        stream = b"".join(body)
        parts.extend((b"\x0a", _varint(len(stream)), stream))
    return b"".join(parts)


def json_body(streams: dict[str, list[Entry]], shaper: Shaper) -> bytes:
    """Loki's JSON push body."""
    out = []
    for labels, entries in streams.items():
        values: list[list[Any]] = []
        for e in entries:
            line = e.line.decode("utf-8", "replace")
            if e.meta:
                values.append([str(e.ts), line, dict(e.meta)])
            else:
                values.append([str(e.ts), line])
        out.append({"stream": shaper.labels_of(labels), "values": values})
    return orjson.dumps({"streams": out})


def encode(entries: list[Entry], config: LokiSinkConfig, shaper: Shaper) -> tuple[bytes, dict[str, str], int]:
    """The request body of ``entries`` (one tenant's), its content headers, and its size before
    compression."""
    streams = group(entries)
    if config.push_format == "protobuf":
        raw = protobuf_body(streams)
        return bytes(cramjam.snappy.compress_raw(raw)), {"Content-Type": "application/x-protobuf"}, len(raw)
    raw = json_body(streams, shaper)
    if config.compression == "gzip":
        return (
            gzip.compress(raw, compresslevel=1),
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
            len(raw),
        )
    return raw, {"Content-Type": "application/json"}, len(raw)
