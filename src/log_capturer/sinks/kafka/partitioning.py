"""Partition choice for the strategies librdkafka does not provide itself.

- ``hash``: librdkafka's ``murmur2_random`` partitioner, byte-for-byte the Java
  client's default (``toPositive(murmur2(key)) % partitions``), so consumers and
  producers in other languages agree. :func:`murmur2` is the same function in
  Python, used to check it.
- ``random``: librdkafka's ``random`` partitioner.
- ``round-robin``: each record goes to the next partition of its topic.
- ``manual``: the value of ``partitioning.key_field`` (a label or a field of
  the line) is the partition number; a value that is not an integer within
  the topic's partitions is an error for that record only (it is parked in
  the dead-letter queue with the reason ``invalid_partition``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: How long a topic's partition count is trusted before it is looked up again.
METADATA_TTL = 60.0


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as a signed 32-bit int."""
    m = 0x5BD1E995
    mask = 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    rest = length & 3
    tail = n4 * 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class InvalidPartition(ValueError):
    """A manual partition value that is not an integer within the topic's partitions."""


class PartitionChooser:
    """Explicit partitions for round-robin and manual; None lets librdkafka choose."""

    def __init__(self, strategy: str, partition_count: Callable[[str], int | None]) -> None:
        self.strategy = strategy
        self._lookup = partition_count
        self._counts: dict[str, tuple[int | None, float]] = {}
        self._next: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def explicit(self) -> bool:
        return self.strategy in ("round-robin", "manual")

    def partitions(self, topic: str) -> int | None:
        now = time.monotonic()
        cached = self._counts.get(topic)
        if cached is not None and now - cached[1] < METADATA_TTL and cached[0]:
            return cached[0]
        count = self._lookup(topic)
        self._counts[topic] = (count, now)
        return count

    def round_robin(self, topic: str, n: int) -> list[int] | None:
        """Partitions for the next ``n`` records of ``topic`` (None: topic metadata unknown)."""
        count = self.partitions(topic)
        if not count:
            return None
        with self._lock:
            start = self._next.get(topic, 0)
            self._next[topic] = (start + n) % count
        return [(start + i) % count for i in range(n)]

    def manual(self, topic: str, value: str | None) -> int:
        """The partition named by a record's key field value."""
        count = self.partitions(topic)
        if value is None:
            raise InvalidPartition("manual partitioning: the record has no key_field value")
        try:
            partition = int(value)
        except ValueError:
            raise InvalidPartition(
                f"manual partitioning: key_field value {value!r} is not a partition number"
            ) from None
        if partition < 0 or (count is not None and partition >= count):
            raise InvalidPartition(
                f"manual partitioning: partition {partition} does not exist in topic {topic!r}"
                + (f" (it has {count} partitions: 0-{count - 1})" if count else "")
            )
        return partition


class PartitionCounts:
    """Topics' partition counts for the chunk producer's own key hashing, never waited for.

    :meth:`get` (the dispatcher threads) answers from what is known, at once: None for a topic
    not looked up yet, or whose lookup failed (librdkafka's partitioner then places its records).
    Its own thread looks the topics up (a metadata request, which waits up to its timeout when no
    broker answers), and each again after ``METADATA_TTL``.
    """

    def __init__(self, lookup: Callable[[str], int | None], name: str = "partition-counts") -> None:
        self._lookup = lookup
        self._known: dict[str, tuple[int | None, float]] = {}
        self._wanted: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def get(self, topic: str) -> int | None:
        entry = self._known.get(topic)
        if entry is not None and time.monotonic() - entry[1] < METADATA_TTL:
            return entry[0]
        if topic not in self._wanted:
            with self._lock:
                self._wanted.add(topic)
                if not self._started:
                    self._started = True
                    self._thread.start()
            self._wake.set()
        return entry[0] if entry is not None else None

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._started:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                wanted = list(self._wanted)
            for topic in wanted:
                if self._stop.is_set():
                    return
                try:
                    count = self._lookup(topic)
                except Exception:  # a lookup's failure is "unknown": librdkafka partitions meanwhile
                    count = None
                self._known[topic] = (count, time.monotonic())
                with self._lock:
                    self._wanted.discard(topic)
