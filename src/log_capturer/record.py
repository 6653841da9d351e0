"""Chunks of lines and their acknowledgement.

The unit that flows from a source to the sinks is a :class:`Chunk`: the lines a
source read in one go from one origin (a file, a container, a request), with
one read time, and one position that the source may checkpoint once *every*
line of the chunk has been delivered (or durably parked in the DLQ).

Sinks acknowledge lines, not chunks: each delivery report calls
:meth:`Chunk.ack`. When the chunk's count reaches zero it tells its
:class:`~log_capturer.pipeline.checkpoints.Checkpoint`, which moves the
source's committed position over the longest prefix of finished chunks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

try:
    from log_capturer import _speedups
except ImportError:  # pragma: no cover - an install without a C compiler
    _speedups = cast(Any, None)


def text_bytes_py(lines: list[str]) -> int:
    """UTF-8 size of ``lines`` (a lone surrogate counts 3 bytes): the C helper's Python twin."""
    return sum(len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass")) for s in lines)


try:
    from log_capturer import _speedups

    text_bytes: Callable[[list[str]], int] = _speedups.text_bytes
except (ImportError, AttributeError):  # pragma: no cover - an install without a C compiler
    text_bytes = text_bytes_py


@dataclass(eq=False)
class Origin:
    """Where lines come from: constant for every line of a source, encoded once."""

    source_type: str
    source_id: str
    labels: dict[str, str] = field(default_factory=dict)
    #: Name of the processing pipeline for this source's lines ('' = by source_type, or none).
    pipeline: str = ""
    #: '"source_type":...,"source_id":...,"labels":{...}' as JSON bytes, for the record encoder.
    encoded: bytes = b""

    def __post_init__(self) -> None:
        self.reencode()

    def reencode(self) -> None:
        self.encoded = (
            b'"source_type":'
            + orjson.dumps(self.source_type)
            + b',"source_id":'
            + orjson.dumps(self.source_id)
            + b',"labels":'
            + orjson.dumps(self.labels)
        )


class EncodedFields:
    """Each record's fields as the JSON object a sink writes: ``orjson.dumps`` of its fields
    dict, made by the source straight from what it received (the OTLP input's C walk), or the
    dict itself for a record whose fields JSON would not carry exactly (see
    ``sources/otlp/_walk.c``), or None (no fields). What ``Chunk.meta`` holds, without a dict
    per record until one is asked for (:meth:`dicts`: ``orjson.loads`` gives back the dict,
    members in the same order); the Kafka sink's encoder takes :meth:`encoded` as it is.
    ``members``: every top-level member a record's fields may have (the analyzer reads a
    partition key from the fields only when ``key_field`` is one of them)."""

    __slots__ = ("items", "members")

    def __init__(self, items: list[bytes | dict[str, Any] | None], members: frozenset[str]) -> None:
        self.items = items
        self.members = members

    def dicts(self) -> list[dict[str, Any] | None]:
        loads = orjson.loads
        return [loads(item) if isinstance(item, bytes) else item for item in self.items]

    def encoded(self) -> list[bytes | dict[str, Any] | None]:
        return self.items


class KafkaMeta:
    """The Kafka metadata of a chunk's records as columns (``field``: the fields member that holds
    it; the topic and partition of all; each record's offset, key and timestamp in ms or None):
    what ``Chunk.meta`` holds, ``{field: {"topic", "partition", "offset", "key", "timestamp"}}``
    per record, without a dict per record until one is asked for (:meth:`dicts`); a sink's
    encoder takes each record's fields as JSON from :meth:`encoded`."""

    __slots__ = ("field", "keys", "ms", "offsets", "partition", "topic")

    def __init__(
        self,
        field: str,
        topic: str,
        partition: int,
        offsets: list[int],
        keys: list[Any],
        ms: list[int | None],
    ) -> None:
        self.field = field
        self.topic = topic
        self.partition = partition
        self.offsets = offsets
        self.keys = keys
        self.ms = ms

    @property
    def members(self) -> frozenset[str]:
        """The one top-level member of each record's fields."""
        return frozenset((self.field,))

    def dicts(self) -> list[dict[str, Any]]:
        field, topic, partition = self.field, self.topic, self.partition
        return [
            {field: {"topic": topic, "partition": partition, "offset": o, "key": k, "timestamp": t}}
            for o, k, t in zip(self.offsets, self.keys, self.ms, strict=True)
        ]

    def encoded(self) -> list[bytes]:
        """Each record's fields object as ``orjson.dumps`` gives it (in C when the module is built)."""
        if _speedups is not None:
            prefix = (
                b"{"
                + orjson.dumps(self.field)
                + b':{"topic":'
                + orjson.dumps(self.topic)
                + b',"partition":'
                + str(int(self.partition)).encode()
                + b',"offset":'
            )
            return _speedups.kafka_fields(prefix, self.offsets, self.keys, self.ms, orjson.dumps)
        return list(map(orjson.dumps, self.dicts()))


RELEASED = "the chunk's line text was released: every sink it went to holds its records encoded"


class ReleasedLines(Sequence[str]):
    """What ``Chunk.lines`` becomes once every sink the chunk went to holds its records encoded
    (:meth:`Chunk.release_text`): the number of lines, without their text. Counting works as
    before (acknowledgements, checkpoints, metrics); reading a line raises, since reading one
    after the release would be a bug."""

    __slots__ = ("_n",)

    def __init__(self, n: int) -> None:
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any) -> Any:
        raise RuntimeError(RELEASED)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError(RELEASED)

    def __repr__(self) -> str:
        return f"ReleasedLines({self._n})"


class Chunk:
    """Lines read together from one origin, acknowledged as a whole."""

    __slots__ = (
        "_done_cb",
        "_lock",
        "_meta",
        "_text_bytes",
        "done",
        "end",
        "keys",
        "levels",
        "lines",
        "meta_columns",
        "offsets",
        "origin",
        "pending",
        "preset_levels",
        "read_time_ns",
        "registered",
        "routed",
        "start",
        "stream",
        "timestamps",
        "truncated",
    )

    def __init__(
        self,
        origin: Origin,
        lines: list[str],
        start: int = 0,
        end: int = 0,
        read_time_ns: int | None = None,
        meta: list[dict[str, Any] | None] | None = None,
    ) -> None:
        self.origin = origin
        self.lines = lines
        #: Source position range covered by the lines (bytes for files).
        self.start = start
        self.end = end
        #: What the positions are positions in, when the origin has several over time: a file's
        #: ``<device>:<inode>`` (a path's rotated and new files). '' when the origin says all.
        self.stream = ""
        self.read_time_ns = time.time_ns() if read_time_ns is None else read_time_ns
        #: The per-line extra fields as columns, made into ``meta`` when it is first read (the
        #: Kafka source's metadata, the OTLP input's fields as JSON); None once made, or when
        #: the source gave ``meta`` itself.
        self._meta: list[dict[str, Any] | None] | None = None
        self.meta_columns: KafkaMeta | EncodedFields | None = None
        #: Per-line extra fields from the source (``None`` when no line has any).
        self.meta = meta
        #: Per-line offsets in ``stream`` when the source has one per record (Kafka: the
        #: record's offset in the partition ``stream`` names); None otherwise.
        self.offsets: list[int] | None = None
        #: Indexes of lines that were truncated by the source.
        self.truncated: frozenset[int] = frozenset()
        #: Per-line event time (ns since the epoch) when the source or a pipeline knows it
        #: (syslog, HTTP ingest, ``timestamp_parse``); None = every line uses ``read_time_ns``.
        self.timestamps: list[int] | None = None
        #: Per-line level given by the source or a pipeline (syslog severity, an ingested
        #: ``level``, ``log_level_extract``); None entries, or None for all, are detected.
        self.preset_levels: list[str | None] | None = None
        #: Filled by the analyzer: normalised level and partition-key value of each line.
        self.levels: list[str] = []
        self.keys: list[str | None] | None = None
        self._text_bytes = -1
        #: The sinks the dispatcher routed the chunk to (``routes``), set when it is submitted.
        self.routed: tuple[Any, ...] = ()
        self.pending = 0
        self.done = False
        #: Its checkpoint knows it (or it has none): set by ``Dispatcher.submit`` once the chunk
        #: is registered, which may be after it was delivered.
        self.registered = False
        self._done_cb: Callable[[Chunk], None] | None = None
        self._lock = threading.Lock()

    def joined(self, after: Chunk) -> Chunk:
        """This chunk and ``after`` as one: the next lines of the same origin and stream, just
        read (no per-line fields, levels, times or offsets yet, not handed over)."""
        for c in (self, after):
            if c.meta is not None or c.timestamps is not None or c.preset_levels is not None or c.offsets:
                raise ValueError("only chunks of bare lines are joined")
        if after.origin is not self.origin or after.stream != self.stream or after.start != self.end:
            raise ValueError("a chunk is joined only with the one that follows it")
        n = len(self.lines)
        out = Chunk(self.origin, self.lines + after.lines, self.start, after.end, self.read_time_ns)
        out.stream = self.stream
        if after.truncated:
            out.truncated = self.truncated | frozenset(n + i for i in after.truncated)
        else:
            out.truncated = self.truncated
        return out

    @property
    def meta(self) -> list[dict[str, Any] | None] | None:
        """Per-line extra fields from the source (``None`` when no line has any); made from
        ``meta_columns`` when it is first read."""
        cols = self.meta_columns
        if cols is not None:  # two threads may both make them: equal lists
            made: list[dict[str, Any] | None] = list(cols.dicts())
            self._meta = made
            self.meta_columns = None
            return made
        return self._meta

    @meta.setter
    def meta(self, value: list[dict[str, Any] | None] | None) -> None:
        self._meta = value
        self.meta_columns = None

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def text_bytes(self) -> int:
        """UTF-8 size of the line text (what the dispatcher queue's byte limit counts), computed once."""
        n = self._text_bytes
        if n < 0:
            n = self._text_bytes = text_bytes(self.lines)
        return n

    def release_text(self) -> None:
        """Drop the lines' text, keeping their number (:class:`ReleasedLines`): called once every
        sink the chunk went to holds its records encoded and will not read the lines again
        (``Sink.releases_text``), so that the text of the records in flight is held once, in
        the records, not twice. Its ``text_bytes`` stays what it was."""
        if self._text_bytes < 0:
            self._text_bytes = text_bytes(self.lines)
        self.lines = cast(list[str], ReleasedLines(len(self.lines)))

    def expect(self, acks: int, on_done: Callable[[Chunk], None] | None) -> None:
        """Arm the chunk: ``acks`` acknowledgements finish it, then ``on_done(chunk)`` runs."""
        with self._lock:
            self.pending = acks
            self._done_cb = on_done
            self.done = acks <= 0
        if self.done and on_done is not None:
            on_done(self)

    def on_done(self, callback: Callable[[Chunk], None] | None) -> None:
        """Set the completion callback; runs at once if the chunk is already finished."""
        with self._lock:
            self._done_cb = callback
            finished = self.done
        if finished and callback is not None:
            callback(self)

    def ack(self, n: int = 1) -> None:
        """Acknowledge ``n`` lines (delivered, or durably parked)."""
        with self._lock:
            self.pending -= n
            finished = self.pending <= 0 and not self.done
            if finished:
                self.done = True
            cb = self._done_cb
        if finished and cb is not None:
            cb(self)


class ChunkGroup(Chunk):
    """Small chunks of any origins, next to each other in a dispatcher batch, handed to a sink
    as one (one request, one delivery: the engine's cost per chunk paid once for all of them).

    Its lines and levels are the chunks' in order. It is acknowledged as a whole: once every
    line of it is, each of its chunks is acknowledged in full. Its ``origin`` is the first
    chunk's; a sink encodes each chunk with its own (``chunks``)."""

    __slots__ = ("acked", "chunks")

    def __init__(self, chunks: list[Chunk]) -> None:
        first = chunks[0]
        lines: list[str] = []
        levels: list[str] = []
        for c in chunks:
            lines += c.lines
            levels += c.levels
        super().__init__(first.origin, lines, read_time_ns=first.read_time_ns)
        self.levels = levels
        self._text_bytes = sum(c.text_bytes for c in chunks)
        self.chunks = chunks
        self.acked = 0

    def ack(self, n: int = 1) -> None:
        """Acknowledge ``n`` lines; every chunk in full once all of the group's lines are."""
        with self._lock:
            before = self.acked
            self.acked = before + n
            complete = before < len(self.lines) <= self.acked
        if complete:
            for c in self.chunks:
                c.ack(len(c.lines))
