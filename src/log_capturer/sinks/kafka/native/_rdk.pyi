"""Type stub of ``_rdk.c``: the chunk producer on librdkafka (see ``native/__init__.py``).

Errors that come back: ``ImportError`` from :func:`load` (librdkafka cannot be opened, or lacks a
symbol); ``ValueError`` from :class:`Producer` (a configuration librdkafka refuses, with its
message) and from ``produce_chunk`` (lists of different lengths, a topic librdkafka refuses);
``TypeError`` (a value that is not bytes, a key that is not str/bytes/None, a config entry that
is not str); ``RuntimeError`` (not loaded, closed or closing, a failed purge); ``MemoryError``.
A record's delivery error is not an exception: it comes back in the settled chunk.
"""

from collections.abc import Callable
from typing import Any

#: A header list, as confluent-kafka's ``produce`` takes it.
Headers = list[tuple[str, str | bytes | None]]
#: A failed record: (librdkafka error code, topic, value, key, partition, headers); the very
#: objects the chunk was produced from (None where the chunk had no keys, no headers).
Failure = tuple[int, str, bytes, str | bytes | None, int, Headers | None]
#: A settled chunk: (token, records handed over, failed records).
Settled = tuple[Any, int, list[Failure]]

def load(path: str, /) -> str:
    """Open librdkafka at ``path`` (once per process); returns its version."""

def _fail_next_results(n: int, /) -> None:
    """Tests only: the next ``n`` settled chunks with failed records find no memory for results."""

class Producer:
    """A librdkafka producer that reports deliveries per chunk of records.

    Callbacks run in the thread that calls :meth:`poll` / :meth:`flush`, with the GIL held:
    ``error_cb(code, reason, fatal)`` (``fatal`` is 0 or 1), ``stats_cb(json)``,
    ``log_cb(syslog_level, facility, message)``.
    """

    def __init__(
        self,
        conf: dict[str, str],
        error_cb: Callable[[int, str, int], object] | None = None,
        stats_cb: Callable[[str], object] | None = None,
        log_cb: Callable[[int, str, str], object] | None = None,
    ) -> None: ...
    def produce_chunk(
        self,
        token: object,
        topics: list[str],
        values: list[bytes] | list[str],
        keys: list[str | None] | list[str] | list[bytes] | list[str | bytes | None] | None = None,
        partitions: list[int] | None = None,
        headers: list[Headers | None] | list[Headers] | None = None,
        partition_counts: dict[str, int] | None = None,
        /,
    ) -> int:
        """Hand the records over (the GIL released while librdkafka enqueues them; a full queue
        waits for room); returns how many were handed over. A value may be an ASCII str (its
        own bytes, not copied; a failed record gives back its bytes). ``headers``: each record's header
        list (the same object for records that share it), or None. ``partition_counts`` (with
        keys, without partitions and headers): the partitions of the topics it names; their keyed
        records are partitioned here as librdkafka's murmur2_random does, and each partition's
        records enqueued at once; a topic it does not name, and a record without a key, are left
        to librdkafka's partitioner."""
    def poll(self, timeout: float, /) -> tuple[int, list[Settled]]:
        """Serve callbacks for up to ``timeout`` s: (events served, chunks settled meanwhile)."""
    def flush(self, timeout: float, /) -> tuple[int, list[Settled]]:
        """Send what lingers, as :meth:`poll`: (records still held, chunks settled)."""
    def wake(self) -> None:
        """End the current :meth:`poll` / :meth:`flush` wait now (any thread)."""
    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None: ...
    def transaction(self, op: int, timeout: float, /) -> tuple[int, str, bool, bool, bool] | None:
        """0 init_transactions, 1 begin, 2 commit, 3 abort: None, or the error."""
    def close(self) -> None:
        """Purge what is held and destroy the librdkafka handle (its threads end now)."""
    def __len__(self) -> int:
        """librdkafka's out queue: records and events waiting for poll()."""
    @property
    def live_chunks(self) -> int: ...
    @property
    def records(self) -> int: ...
    @property
    def deferred(self) -> int: ...
