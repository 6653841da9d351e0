"""What the Kafka sink sends: a chunk's records with their topics, keys, partitions and headers.

Nothing here talks to a broker (the manual and round-robin partitioners ask for a topic's
partition count through the callable they are given); it runs in the dispatcher threads.

- topic by level: ``priority_routing`` (:func:`routing`), else every record to ``topic``;
- key: ``partitioning.key_field``: the source's label, else the line's key, else the source id;
- partition: -1 (librdkafka's partitioner, murmur2 like Java's) unless the strategy is
  ``round-robin`` or ``manual`` (:mod:`.partitioning`);
- value: the record by ``encoding`` (:mod:`log_capturer.sinks.encoding`; the json envelope
  is :mod:`.encode`), and per topic the records, bytes and size-histogram
  buckets (``tally``), in one pass;
- headers: ``sinks.kafka.headers`` (:mod:`.headers`), one list per level, built once per chunk;
  a dead letter's ``dlq_*`` headers (:func:`dead_letter_headers`);
- refusals: a record larger than ``max_message_bytes`` or with an invalid manual partition is
  refused before it is produced (:meth:`RequestBuilder.producible`), with its reason.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import cast

from log_capturer.engine.contract import Headers, Record, Refused
from log_capturer.record import Chunk, ChunkGroup
from log_capturer.sinks.base import utc_now_iso
from log_capturer.sinks.encoding import ChunkEncoder
from log_capturer.sinks.kafka.config import KafkaSinkConfig
from log_capturer.sinks.kafka.encode import LEVELS, ascii_lines, encode_chunk, tally, topics_of
from log_capturer.sinks.kafka.headers import headers_for
from log_capturer.sinks.kafka.partitioning import InvalidPartition, PartitionChooser

HIGH = frozenset({"error", "fatal", "critical"})
NORMAL = frozenset({"warn", "info"})
LOW = frozenset({"debug", "trace"})

#: A record that may be produced: (index in its chunk, topic, value, key, partition (-1:
#: librdkafka's partitioner), headers).
Producible = tuple[int, str, bytes, str | None, int, Headers | None]


def routing(config: KafkaSinkConfig) -> dict[str, str]:
    """Topic of each level (``priority_routing``; every level to ``topic`` when it is off)."""
    r = config.priority_routing
    out: dict[str, str] = {}
    for lvl in LEVELS:
        if not r.enabled:
            out[lvl] = config.topic
        elif lvl in HIGH:
            out[lvl] = r.high_topic
        elif lvl in NORMAL:
            out[lvl] = r.normal_topic
        elif lvl in LOW:
            out[lvl] = r.low_topic
        else:
            out[lvl] = config.topic
    return out


class KafkaRequest:
    """A chunk's Kafka records (see :class:`~log_capturer.engine.contract.Prepared`): parallel
    lists, one entry per line; ``keys``, ``partitions`` and ``headers`` are None when unused."""

    __slots__ = (
        "chunk",
        "counts",
        "headers",
        "keys",
        "longest",
        "nbytes",
        "partitions",
        "refuse",
        "tallied",
        "topics",
        "values",
    )

    def __init__(
        self,
        builder: RequestBuilder,
        chunk: Chunk,
        columns: tuple[list[str], list[str | None] | None, list[bytes]] | None = None,
    ) -> None:
        """``columns``: the topics, keys and values already made (a :class:`ChunkGroup`'s)."""
        self.chunk = chunk
        self.values: list[bytes] | list[str]
        if columns is not None:
            self.topics, self.keys, self.values = columns
        else:
            self.topics = topics_of(builder.topic_of, chunk.levels)
            self.keys = builder.keys(chunk)
            if builder.lines_as_values and ascii_lines(chunk.lines):
                # codec raw into the chunk producer: an ASCII line is its own record's bytes,
                # handed over as it is (no bytes object per line); record_values() encodes
                # them if needed.
                self.values = list(chunk.lines)
            else:
                self.values = builder.encoder.encode(chunk)
        # Per topic: records, bytes and the size histogram's buckets, in one pass.
        self.tallied, self.longest = tally(self.topics, self.values, builder.size_bounds)
        self.nbytes = sum(row[1] for row in self.tallied.values())
        self.counts = {t: row[0] for t, row in self.tallied.items()}
        self.partitions = builder.partitions(self.topics, self.keys) if builder.chooser.explicit else None
        self.headers = builder.chunk_headers(chunk) if builder.config.headers else None
        #: Records to refuse whatever their size (exactly-once: lines the broker refused in an
        #: aborted transaction), by index: reason and error text.
        self.refuse: dict[int, tuple[str, str]] | None = None

    def record_values(self) -> list[bytes]:
        """The records' values as bytes (the lines' own, encoded, when ``values`` holds them)."""
        values = self.values
        if values and isinstance(values[0], str):
            return [v.encode() if isinstance(v, str) else v for v in values]
        return cast("list[bytes]", values)


class RequestBuilder:
    """Turns chunks into :class:`KafkaRequest` s, by the ``sinks.kafka`` config.

    ``size_bounds``: the upper bounds of the record-size histogram's buckets;
    ``partition_count(topic)``: the topic's partitions, None when unknown (a metadata request).
    """

    def __init__(
        self,
        config: KafkaSinkConfig,
        size_bounds: tuple[float, ...],
        partition_count: Callable[[str], int | None],
    ) -> None:
        self.config = config
        self.topic_of = routing(config)
        part = config.partitioning
        self.key_field = part.key_field if part.enabled else None
        self.chooser = PartitionChooser(part.strategy if part.enabled else "hash", partition_count)
        self.size_bounds = size_bounds
        self.max_message_bytes = config.max_message_bytes
        self.encoder = ChunkEncoder(config.encoding, self.key_field, encode_chunk)
        #: Set by the sink when its chunk producer takes every record (not exactly-once): with
        #: codec raw, the ASCII lines themselves are the values (see KafkaRequest).
        self.lines_as_values = False

    def build(self, chunk: Chunk) -> KafkaRequest:
        return KafkaRequest(self, chunk)

    @property
    def groups(self) -> bool:
        """Whether chunks may go as one request: not with headers (per origin) nor round-robin
        or manual partitions (chosen per chunk)."""
        return not self.config.headers and not self.chooser.explicit

    def build_many(self, group: ChunkGroup) -> KafkaRequest | None:
        """One request of the records of ``group.chunks``, each chunk's encoded with its origin;
        None when its chunks must go one by one (:attr:`groups`)."""
        if not self.groups:
            return None
        topic_of, encode = self.topic_of, self.encoder.encode
        topics: list[str] = []
        values: list[bytes] = []
        keys: list[str | None] | None = None if self.key_field is None else []
        for chunk in group.chunks:
            topics += topics_of(topic_of, chunk.levels)
            values += encode(chunk)
            if keys is not None:
                keys += self.keys(chunk) or ()
        return KafkaRequest(self, group, (topics, keys, values))

    def records_of(self, chunk: Chunk) -> list[Record]:
        """A chunk's records one by one (topic, value, key, headers): what the engine parks for a
        chunk it could not hand over."""
        if isinstance(chunk, ChunkGroup):
            return [record for c in chunk.chunks for record in self.records_of(c)]
        topics = topics_of(self.topic_of, chunk.levels)
        keys = self.keys(chunk)
        values = self.encoder.encode(chunk)
        headers = self.chunk_headers(chunk) if self.config.headers else None
        levels = chunk.levels
        return [
            Record(
                topics[j],
                value,
                keys[j] if keys is not None else None,
                headers=headers[levels[j]] if headers is not None else None,
            )
            for j, value in enumerate(values)
        ]

    def keys(self, chunk: Chunk) -> list[str | None] | None:
        """Message key of each record: label, else the line's key field, else the source id."""
        kf = self.key_field
        if kf is None:
            return None
        origin = chunk.origin
        default = origin.labels.get(kf, origin.source_id)
        line_keys = chunk.keys
        if line_keys is None:
            return [default] * len(chunk.lines)
        if all(line_keys):  # every line had a (non-empty) key: truthiness only, no comparisons
            return line_keys
        return [default if k is None else k for k in line_keys]

    def partitions(
        self, topics: list[str], keys: list[str | None] | None
    ) -> list[int | InvalidPartition] | None:
        """Explicit partitions (round-robin, manual); an invalid manual one as its error."""
        chooser = self.chooser
        if chooser.strategy == "round-robin":
            out: list[int | InvalidPartition] = [-1] * len(topics)
            by_topic: dict[str, list[int]] = collections.defaultdict(list)
            for i, t in enumerate(topics):
                by_topic[t].append(i)
            for t, idx in by_topic.items():
                parts = chooser.round_robin(t, len(idx))
                if parts is not None:
                    for i, p in zip(idx, parts, strict=True):
                        out[i] = p
            return out
        result: list[int | InvalidPartition] = []
        for i, t in enumerate(topics):
            try:
                result.append(chooser.manual(t, keys[i] if keys is not None else None))
            except InvalidPartition as exc:
                result.append(exc)
        return result

    def chunk_headers(self, chunk: Chunk) -> dict[str, Headers]:
        """The headers of each level's records (``sinks.kafka.headers``), for this chunk's origin."""
        origin = chunk.origin
        names = self.config.headers
        return {
            lvl: headers_for(names, lvl, origin.source_type, origin.source_id, origin.labels)
            for lvl in LEVELS
        }

    def producible(
        self, request: KafkaRequest, refused: list[Refused], start: int = 0
    ) -> Iterator[Producible]:
        """Each record of ``request`` from ``start`` on that may be produced; those refused
        instead (larger than max_message_bytes, an invalid manual partition) are added to
        ``refused`` with their reason."""
        topics, keys, partitions, headers = request.topics, request.keys, request.partitions, request.headers
        levels = request.chunk.levels
        values = request.record_values()
        max_bytes = self.max_message_bytes
        refuse = request.refuse
        for i in range(start, len(values)):
            value, topic = values[i], topics[i]
            key = keys[i] if keys is not None else None
            part = partitions[i] if partitions is not None else -1
            hdrs = headers[levels[i]] if headers is not None else None
            if refuse is not None and i in refuse:
                reason, text = refuse[i]
                refused.append(Refused(Record(topic, value, key, headers=hdrs), reason, text))
            elif len(value) > max_bytes:
                msg = f"record of {len(value)} bytes exceeds max_message_bytes={max_bytes}"
                refused.append(Refused(Record(topic, value, key, headers=hdrs), "message_too_large", msg))
            elif isinstance(part, InvalidPartition):
                refused.append(
                    Refused(Record(topic, value, key, headers=hdrs), "invalid_partition", str(part))
                )
            else:
                yield i, topic, value, key, part, hdrs


def dead_letter_headers(rec: Record, reason: str, error: str, sink_name: str) -> Headers:
    """A record's headers for the DLQ topic: its own, then why and where it failed."""
    return [
        *(rec.headers or []),
        ("dlq_error_type", reason.encode()),
        ("dlq_error_message", error.encode("utf-8", "backslashreplace")),
        ("dlq_original_topic", rec.topic.encode()),
        ("dlq_failed_sink", sink_name.encode()),
        ("dlq_timestamp", utc_now_iso().encode()),
    ]
