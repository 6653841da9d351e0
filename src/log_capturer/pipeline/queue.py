"""A bounded, sharded queue of chunks, sized in lines and in bytes of line text.

Each shard is served by one dispatcher worker; a source always maps to the
same shard, so its chunks keep their order. Capacity is shared: a producer
(a source) blocks while the whole queue is full (by lines or by bytes), which
is how backpressure reaches the readers. A chunk larger than the capacity is
still accepted when the queue is empty, so nothing can deadlock.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from log_capturer.record import Chunk


class QueueClosed(Exception):
    """The queue no longer accepts chunks (the agent is stopping)."""


class ChunkQueue:
    def __init__(self, capacity: int, shards: int, max_bytes: int = 1 << 62) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.size = 0
        self.nbytes = 0
        self._closed = False
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._shards: list[deque[Chunk]] = [deque() for _ in range(shards)]
        self._ready = [threading.Condition(self._lock) for _ in range(shards)]

    @property
    def shards(self) -> int:
        return len(self._shards)

    @property
    def utilization(self) -> float:
        return min(1.0, max(self.size / self.capacity, self.nbytes / self.max_bytes))

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, shard: int, chunk: Chunk, timeout: float | None = None) -> bool:
        """Queue ``chunk`` on ``shard``; wait while full. False on timeout."""
        n = len(chunk.lines)
        nbytes = chunk.nbytes
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while (
                self.size > 0
                and (self.size + n > self.capacity or self.nbytes + nbytes > self.max_bytes)
                and not self._closed
            ):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._not_full.wait(remaining)
            if self._closed:
                raise QueueClosed
            self._shards[shard].append(chunk)
            self.size += n
            self.nbytes += nbytes
            self._ready[shard].notify()
        return True

    def take(self, shard: int, max_lines: int, max_wait: float, flush_on_idle: bool) -> list[Chunk] | None:
        """Next batch for ``shard``: blocks for the first chunk, then gathers up to ``max_lines``.

        With ``flush_on_idle`` the batch is returned as soon as the shard runs
        empty; otherwise it waits up to ``max_wait`` for it to fill. Returns None
        once the queue is closed and the shard drained.
        """
        dq = self._shards[shard]
        ready = self._ready[shard]
        with self._lock:
            while not dq:
                if self._closed:
                    return None
                ready.wait()
            batch: list[Chunk] = []
            n = 0
            deadline = time.monotonic() + max_wait
            while True:
                taken = 0
                taken_bytes = 0
                while dq and n < max_lines:
                    c = dq.popleft()
                    batch.append(c)
                    taken += len(c.lines)
                    taken_bytes += c.nbytes
                    n += len(c.lines)
                if taken:
                    self.size -= taken
                    self.nbytes -= taken_bytes
                    self._not_full.notify_all()
                if n >= max_lines or self._closed or flush_on_idle:
                    return batch
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch
                ready.wait(remaining)

    def shard_empty(self, shard: int) -> bool:
        return not self._shards[shard]

    def close(self) -> None:
        """Refuse new chunks; workers drain what is queued, then get None."""
        with self._lock:
            self._closed = True
            self._not_full.notify_all()
            for cond in self._ready:
                cond.notify_all()
