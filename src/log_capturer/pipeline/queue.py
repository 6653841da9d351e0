"""A bounded queue of chunks keyed by source, sized in lines and in UTF-8 bytes of line text.

Any dispatcher worker may take any source's chunks, but never two workers the
same source at once: a source whose chunks a worker took is *held* until the
worker hands them to the sinks and calls :meth:`ChunkQueue.release`. So the
lines of one source reach the sinks in read order, and the work spreads over
the workers whatever the number of sources (a fixed source -> worker mapping
left one worker with three of four busy files and the other with one).
Sources are served in turn (first come, first served; a source released with
more queued goes to the back), so a busy source cannot starve a quiet one.

Capacity is shared: a producer (a source) blocks while the whole queue is full
(by lines or by bytes), which is how backpressure reaches the readers. A chunk
larger than the capacity is still accepted when the queue is empty, so nothing
can deadlock.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from log_capturer.record import Chunk

#: A worker's batch: the chunks, and the sources it holds until :meth:`ChunkQueue.release`.
Taken = tuple[list[Chunk], list[str]]


class QueueClosed(Exception):
    """The queue no longer accepts chunks (the agent is stopping)."""


class ChunkQueue:
    def __init__(self, capacity: int, max_bytes: int = 1 << 62) -> None:
        self.capacity = capacity
        #: Limit and content in UTF-8 bytes of line text (:attr:`Chunk.text_bytes`).
        self.max_bytes = max_bytes
        self.size = 0
        self.text_bytes = 0
        self._closed = False
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        #: A source is ready (may be taken) when it has queued chunks and no worker holds it.
        self._work = threading.Condition(self._lock)
        #: Workers filling a partial batch wait here for any new chunk (flush_on_idle off).
        self._more = threading.Condition(self._lock)
        #: Threads waiting on each condition (under the lock): a notify with nobody waiting is
        #: skipped. Condition.notify() checks the lock's owner with two lock operations and walks
        #: its waiters even when there are none, several times a chunk of one line.
        self._waiting_full = 0
        self._waiting_work = 0
        self._waiting_more = 0
        self._chunks: dict[str, deque[Chunk]] = {}
        self._ready: deque[str] = deque()
        self._held: set[str] = set()

    @property
    def utilization(self) -> float:
        return min(1.0, max(self.size / self.capacity, self.text_bytes / self.max_bytes))

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def empty(self) -> bool:
        """Nothing queued (chunks taken by workers are no longer queued)."""
        return self.size == 0

    def put(self, key: str, chunk: Chunk, timeout: float | None = None) -> bool:
        """Queue ``chunk`` behind the earlier chunks of source ``key``; wait while full. False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if not self._wait_room(chunk, deadline, wake_workers=False):
                return False
            if self._closed:
                raise QueueClosed
            self._append(key, chunk)
            if self._waiting_more:
                self._more.notify_all()
        return True

    def put_many(self, items: list[tuple[str, Chunk]], timeout: float | None = None) -> int:
        """Queue ``(key, chunk)`` pairs in order, as :meth:`put` would one by one, under one
        acquisition of the lock: a worker woken by the first finds them all (one hand-off for a
        request or message instead of one per chunk). Waits while full; returns how many were
        queued (the first ones: fewer when ``timeout`` expired, or the queue closed after some;
        :class:`QueueClosed` when it was closed before the first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        queued = 0
        with self._lock:
            try:
                for key, chunk in items:
                    if not self._wait_room(chunk, deadline, wake_workers=True):
                        return queued
                    if self._closed:
                        if queued:
                            return queued
                        raise QueueClosed
                    self._append(key, chunk)
                    queued += 1
            finally:
                if queued and self._waiting_more:
                    self._more.notify_all()
        return queued

    def _wait_room(self, chunk: Chunk, deadline: float | None, wake_workers: bool) -> bool:
        """Under the lock: wait until ``chunk`` fits (an empty queue always takes one) or the
        queue closes; False when ``deadline`` passed first. ``wake_workers``: workers filling a
        partial batch take what was queued so far before this waits (:meth:`put_many`)."""
        n = len(chunk.lines)
        nbytes = chunk.text_bytes
        while (
            self.size > 0
            and (self.size + n > self.capacity or self.text_bytes + nbytes > self.max_bytes)
            and not self._closed
        ):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if wake_workers and self._waiting_more:
                self._more.notify_all()
            self._waiting_full += 1
            try:
                self._not_full.wait(remaining)
            finally:
                self._waiting_full -= 1
        return True

    def _append(self, key: str, chunk: Chunk) -> None:
        """Under the lock: ``chunk`` behind the earlier chunks of source ``key``."""
        dq = self._chunks.get(key)
        if dq is None:
            dq = self._chunks[key] = deque()
        if not dq and key not in self._held:
            self._ready.append(key)
            if self._waiting_work:
                self._work.notify()
        dq.append(chunk)
        self.size += len(chunk.lines)
        self.text_bytes += chunk.text_bytes

    def take(self, max_lines: int, max_wait: float, flush_on_idle: bool) -> Taken | None:
        """Next batch and the sources it holds: blocks for the first ready source, then gathers
        whole chunks up to ``max_lines`` (from that source, then from the next ready ones).

        With ``flush_on_idle`` the batch is returned as soon as nothing more is ready;
        otherwise it waits up to ``max_wait`` for it to fill. The sources stay held until
        :meth:`release`. Returns None once the queue is closed and empty.
        """
        with self._lock:
            while not self._ready:
                if self._closed and self.size == 0:
                    return None
                self._waiting_work += 1
                try:
                    self._work.wait()
                finally:
                    self._waiting_work -= 1
            batch: list[Chunk] = []
            keys: list[str] = []
            n = 0
            deadline = time.monotonic() + max_wait
            while True:
                taken = 0
                taken_bytes = 0
                # More of the sources this batch holds first (their order), then other ready ones.
                for key in keys:
                    lines, nbytes = self._move(key, batch, max_lines - n - taken)
                    taken += lines
                    taken_bytes += nbytes
                while self._ready and n + taken < max_lines:
                    key = self._ready.popleft()
                    self._held.add(key)
                    keys.append(key)
                    lines, nbytes = self._move(key, batch, max_lines - n - taken)
                    taken += lines
                    taken_bytes += nbytes
                if taken:
                    n += taken
                    self.size -= taken
                    self.text_bytes -= taken_bytes
                    if self._waiting_full:
                        self._not_full.notify_all()
                if n >= max_lines or self._closed or flush_on_idle:
                    return batch, keys
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch, keys
                self._waiting_more += 1
                try:
                    self._more.wait(remaining)
                finally:
                    self._waiting_more -= 1

    def _move(self, key: str, batch: list[Chunk], room: int) -> tuple[int, int]:
        """Move whole chunks of ``key`` into ``batch`` while fewer than ``room`` lines were moved;
        returns the lines and bytes moved. Under the lock."""
        dq = self._chunks[key]
        lines = nbytes = 0
        while dq and lines < room:
            c = dq.popleft()
            batch.append(c)
            lines += len(c.lines)
            nbytes += c.text_bytes
        return lines, nbytes

    def release(self, keys: list[str]) -> None:
        """The worker handed the chunks it took for ``keys`` to the sinks: the sources are free."""
        with self._lock:
            for key in keys:
                self._held.discard(key)
                dq = self._chunks.get(key)
                if dq:
                    self._ready.append(key)
                    if self._waiting_work:
                        self._work.notify()
                elif dq is not None:
                    del self._chunks[key]
            if self._closed:
                self._work.notify_all()  # idle workers re-check whether the queue has drained

    def close(self) -> None:
        """Refuse new chunks; workers drain what is queued, then get None."""
        with self._lock:
            self._closed = True
            self._not_full.notify_all()
            self._work.notify_all()
            self._more.notify_all()
