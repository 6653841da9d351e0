"""Record assembly: turning the raw lines a tail read into records, a batch at a time.

A tail reads whole raw lines; an :class:`Assembler` turns them into records.
It may *hold* the last few raw lines (an unfinished multiline group, a partial
CRI or Docker line) until the rest arrives or a timeout passes. What it holds is
always a suffix of what it was fed, and :attr:`Assembler.held` counts those raw
lines, so the tail can place the checkpoint at the first held line: a record's
checkpoint only moves once the whole record was emitted and acknowledged.

Batches are columns (:class:`Lines`), not one object per record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class Lines:
    """A batch of records as parallel columns."""

    text: list[str] = field(default_factory=list)
    #: Raw lines each record was built from; None means one each.
    raw: list[int] | None = None
    #: Indexes of records cut at ``max_line_bytes``.
    truncated: set[int] = field(default_factory=set)
    #: Stream of each record ("stdout"/"stderr") for container logs; None for plain files.
    streams: list[str] | None = None

    def __len__(self) -> int:
        return len(self.text)

    def raw_count(self, i: int) -> int:
        return 1 if self.raw is None else self.raw[i]

    def extend(self, other: Lines) -> None:
        """Append ``other`` (column-wise) to this batch."""
        if not other.text:
            return
        base = len(self.text)
        if self.raw is not None or other.raw is not None:
            mine = self.raw if self.raw is not None else [1] * base
            mine.extend(other.raw if other.raw is not None else [1] * len(other.text))
            self.raw = mine
        if self.streams is not None or other.streams is not None:
            ms = self.streams if self.streams is not None else [""] * base
            ms.extend(other.streams if other.streams is not None else [""] * len(other.text))
            self.streams = ms
        self.truncated.update(base + i for i in other.truncated)
        self.text.extend(other.text)


class Assembler(Protocol):
    """Turns raw lines into records; may hold a suffix of raw lines until they complete."""

    @property
    def held(self) -> int:
        """Raw lines fed but not yet emitted (always the last ones fed)."""
        ...

    def feed(self, batch: Lines, now: float) -> Lines:
        """Take raw lines (one record each, in order); return the records now complete."""
        ...

    def flush(self) -> Lines:
        """Emit everything held, complete or not."""
        ...

    def due(self, now: float) -> bool:
        """True when held lines waited long enough to be flushed."""
        ...


class Chain:
    """Two assemblers in a row: the first's records are the second's raw lines."""

    def __init__(self, first: Assembler, second: Assembler) -> None:
        self.first = first
        self.second = second
        #: Raw lines behind each record the second stage holds (oldest first).
        self._inner_raw: list[int] = []

    @property
    def held(self) -> int:
        return self.first.held + sum(self._inner_raw)

    def _second(self, out: Lines, now: float) -> Lines:
        self._inner_raw.extend(out.raw if out.raw is not None else [1] * len(out))
        # The second stage sees one raw line per first-stage record; map its output back.
        inner = Lines(out.text, None, out.truncated, out.streams)
        return self._map_back(self.second.feed(inner, now))

    def _map_back(self, res: Lines) -> Lines:
        if not res.text:
            return res
        raw_out: list[int] = []
        pos = 0
        for i in range(len(res)):
            n = res.raw_count(i)
            raw_out.append(sum(self._inner_raw[pos : pos + n]))
            pos += n
        del self._inner_raw[:pos]
        res.raw = raw_out
        return res

    def feed(self, batch: Lines, now: float) -> Lines:
        return self._second(self.first.feed(batch, now), now)

    def flush(self) -> Lines:
        out = self._second(self.first.flush(), float("inf"))
        out.extend(self._map_back(self.second.flush()))
        return out

    def due(self, now: float) -> bool:
        return self.first.due(now) or self.second.due(now)
