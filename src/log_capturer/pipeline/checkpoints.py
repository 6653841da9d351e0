"""Acknowledgement-driven checkpoints.

A :class:`Checkpoint` belongs to one source origin (one file). The source
registers each chunk it emits, in read order; sinks finish chunks in any order.
The committed position is the end of the longest prefix of finished chunks,
so it never passes a line whose delivery has not been confirmed.

Whoever saves positions can be told when ``committed`` moves (``on_advance``,
called on the thread that moved it, under the checkpoint's lock: it must be
cheap, such as setting a flag).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from log_capturer.record import Chunk


class Checkpoint:
    """Ordered chunk tracker for one origin; ``committed`` only ever covers acknowledged lines."""

    __slots__ = ("_chunks", "_lock", "acked_lines", "committed", "in_flight_lines", "on_advance")

    def __init__(self, committed: int = 0, on_advance: Callable[[], None] | None = None) -> None:
        self.committed = committed
        #: Called each time ``committed`` moves (see the module's docstring).
        self.on_advance = on_advance
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
        if not (q and q[0].done):
            return
        while q and q[0].done:
            head = q.popleft()
            self.committed = head.end
            self.acked_lines += len(head.lines)
            self.in_flight_lines -= len(head.lines)
        if self.on_advance is not None:
            self.on_advance()

    def reset(self, position: int) -> None:
        """Forget in-flight chunks (the origin was truncated or replaced) and start at ``position``."""
        with self._lock:
            self._chunks.clear()
            self.in_flight_lines = 0
            self.committed = position
            if self.on_advance is not None:
                self.on_advance()

    @property
    def idle(self) -> bool:
        """True when nothing registered here is still waiting for acknowledgement."""
        with self._lock:
            return not self._chunks
