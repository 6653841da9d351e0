"""Acknowledgement-driven checkpoints.

A :class:`Checkpoint` belongs to one source origin (one file). The source
registers each chunk it emits, in read order; sinks finish chunks in any order.
The committed position is the end of the longest prefix of finished chunks,
so it never passes a line whose delivery has not been confirmed.
"""

from __future__ import annotations

import threading
from collections import deque

from log_capturer.record import Chunk


class Checkpoint:
    """Ordered chunk tracker for one origin; ``committed`` only ever covers acknowledged lines."""

    __slots__ = ("_chunks", "_lock", "acked_lines", "committed", "in_flight_lines")

    def __init__(self, committed: int = 0) -> None:
        self.committed = committed
        self.acked_lines = 0
        self.in_flight_lines = 0
        self._chunks: deque[Chunk] = deque()
        self._lock = threading.Lock()

    def register(self, chunk: Chunk) -> None:
        """Record a dispatched chunk (call in read order); it may already be finished."""
        with self._lock:
            self._chunks.append(chunk)
            self.in_flight_lines += len(chunk.lines)
            self._advance()

    def on_chunk_done(self, chunk: Chunk) -> None:
        """Chunk callback: advance ``committed`` over finished chunks at the head."""
        with self._lock:
            self._advance()

    def _advance(self) -> None:
        q = self._chunks
        while q and q[0].done:
            head = q.popleft()
            self.committed = head.end
            self.acked_lines += len(head.lines)
            self.in_flight_lines -= len(head.lines)

    def reset(self, position: int) -> None:
        """Forget in-flight chunks (the origin was truncated or replaced) and start at ``position``."""
        with self._lock:
            self._chunks.clear()
            self.in_flight_lines = 0
            self.committed = position

    @property
    def idle(self) -> bool:
        """True when nothing registered here is still waiting for acknowledgement."""
        with self._lock:
            return not self._chunks
