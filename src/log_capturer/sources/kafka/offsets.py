"""Per-partition acknowledgement watermarks: the offsets the Kafka source may commit.

The records of one poll of one partition are a :class:`Segment`: the offset range
``[start, end)`` they cover and the number of parts still outstanding (its chunks handed to
the dispatcher, each finished once every sink it was routed to delivered or parked all of
its lines). A partition's :class:`Marks` keep its segments in read order; the *watermark*
is the end of the longest prefix of finished segments: every record below it was
acknowledged, and it is the only offset ever committed. A finished segment after an
unfinished one waits (out-of-order acknowledgements never move the watermark past a record
in flight); gaps between segments (transaction markers, compacted records) are covered by
the next segment's start.

Thread-safe: parts finish on the sinks' threads, the source's thread adds and commits.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

#: (topic, partition)
TP = tuple[str, int]


class Segment:
    """The records ``[start, end)`` of one poll of one partition, ``records`` of them read,
    finished once ``parts`` parts have each called :meth:`Watermarks.part_done`; a segment with
    a part :meth:`Watermarks.drop` dropped never finishes."""

    __slots__ = ("dropped", "end", "marks", "parts", "records", "start")

    def __init__(self, marks: Marks, start: int, end: int, records: int) -> None:
        self.marks = marks
        self.start = start
        self.end = end
        self.records = records
        self.parts = 0
        self.dropped = False


@dataclass
class Marks:
    """One partition's segments and its watermark."""

    tp: TP
    segments: deque[Segment] = field(default_factory=deque)
    #: The next offset to commit: every record below it is acknowledged (-1: none yet).
    watermark: int = -1
    #: The watermark last committed (-1: none).
    committed: int = -1
    #: Records read and not acknowledged.
    in_flight: int = 0
    #: False once the partition was revoked: its segments still finish but move nothing.
    owned: bool = True


class Watermarks:
    """The marks of every assigned partition."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._marks: dict[TP, Marks] = {}
        #: Records read and not acknowledged, over every partition.
        self.in_flight = 0

    def assign(self, tps: list[TP]) -> None:
        with self._lock:
            for tp in tps:
                if tp not in self._marks:
                    self._marks[tp] = Marks(tp)

    def add(self, tp: TP, start: int, end: int, records: int) -> Segment:
        """A new segment of ``tp`` (after every one before it); add its parts with
        :meth:`add_part`, then :meth:`seal` it."""
        with self._lock:
            marks = self._marks.get(tp)
            if marks is None:
                marks = self._marks[tp] = Marks(tp)
            seg = Segment(marks, start, end, records)
            seg.parts = 1  # held until sealed
            marks.segments.append(seg)
            marks.in_flight += records
            self.in_flight += records
            return seg

    def add_part(self, seg: Segment, n: int = 1) -> None:
        with self._lock:
            seg.parts += n

    def seal(self, seg: Segment) -> None:
        """Every part of ``seg`` was added: it finishes when they have."""
        self.part_done(seg)

    def part_done(self, seg: Segment) -> None:
        with self._cond:
            seg.parts -= 1
            if seg.parts > 0:
                return
            marks = seg.marks
            while marks.segments and marks.segments[0].parts <= 0 and not marks.segments[0].dropped:
                done = marks.segments.popleft()
                marks.watermark = done.end
                marks.in_flight -= done.records
                if marks.owned:
                    self.in_flight -= done.records
            self._cond.notify_all()

    def drop(self, seg: Segment) -> None:
        """One part of ``seg`` will never finish: its chunk was not handed over (its partition
        was revoked, or the source stopped), and the partition's next reader reads it again.
        The watermark never passes ``seg``; :meth:`wait_settled` no longer waits for that part."""
        seg.dropped = True
        self.part_done(seg)

    def to_commit(self, tps: list[TP] | None = None) -> dict[TP, int]:
        """The watermarks not committed yet (of ``tps``, or of every partition)."""
        with self._lock:
            chosen = (
                self._marks.values() if tps is None else [self._marks[t] for t in tps if t in self._marks]
            )
            return {m.tp: m.watermark for m in chosen if m.watermark > m.committed}

    def committed(self, offsets: dict[TP, int]) -> list[TP]:
        """The broker took ``offsets``, in the order it answered.

        An answer below the offset last recorded is an older commit that librdkafka sent again
        (its coordinator died while it was in flight) and that landed after a newer one: the
        group now holds the older offset. The partition's committed offset goes back to it, so
        the next commit sends the watermark again (a stale offset would otherwise stay, and the
        partition's next reader would read again what was delivered). Returns the partitions
        whose committed offset went back."""
        back: list[TP] = []
        with self._lock:
            for tp, offset in offsets.items():
                marks = self._marks.get(tp)
                if marks is not None and offset >= 0:
                    if offset < marks.committed:
                        back.append(tp)
                    marks.committed = offset
        return back

    def wait_settled(self, tps: list[TP], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until no record of ``tps`` handed over is in flight
        (every part finished or dropped); True if none is."""
        with self._cond:
            return self._cond.wait_for(
                lambda: all(s.parts <= 0 for t in tps if t in self._marks for s in self._marks[t].segments),
                timeout,
            )

    def revoke(self, tps: list[TP]) -> None:
        """Forget ``tps``: what they still have in flight no longer counts against the budget."""
        with self._lock:
            for tp in tps:
                marks = self._marks.pop(tp, None)
                if marks is not None and marks.owned:
                    marks.owned = False
                    self.in_flight -= marks.in_flight

    def lag_base(self) -> dict[TP, int]:
        """The offset each partition's lag counts from: its committed offset, else the first
        offset read (-1: neither is known yet)."""
        with self._lock:
            out = {}
            for tp, m in self._marks.items():
                base = m.committed
                if base < 0:
                    base = m.segments[0].start if m.segments else m.watermark
                out[tp] = base
            return out

    def partitions(self) -> dict[TP, tuple[int, int, int]]:
        """(watermark, committed, in flight) of each partition."""
        with self._lock:
            return {tp: (m.watermark, m.committed, m.in_flight) for tp, m in self._marks.items()}
