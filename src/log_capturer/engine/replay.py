"""Replaying the local store's entries with several sinks: each entry goes back to the sink that
parked it (its ``failed_sink``), so a record the local file sink parked while its disk was full
is written to its files, not produced to Kafka, and the other way round."""

from __future__ import annotations

from collections.abc import Sequence

from log_capturer.reliability.dlq.replay import ReplayRecord
from log_capturer.sinks.base import ReplaySink, Sink


class SinkReplay:
    """The :class:`~log_capturer.reliability.dlq.replay.ReplayTarget` of an agent's sinks. An entry
    whose sink is not running (another configuration parked it) goes to the first sink, as when
    the agent had one sink."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks: list[tuple[str, ReplaySink]] = [(s.name, s) for s in sinks if isinstance(s, ReplaySink)]
        if not self.sinks:
            raise ValueError("no sink replays entries")
        self._by_name = dict(self.sinks)

    def replay_blocker(self) -> str:
        """'' while at least one sink can replay; else each sink's reason."""
        if len(self.sinks) == 1:
            return self.sinks[0][1].replay_blocker()
        reasons = [f"{name}: {why}" for name, s in self.sinks if (why := s.replay_blocker())]
        return "; ".join(reasons) if len(reasons) == len(self.sinks) else ""

    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        default = self.sinks[0][1]
        groups: dict[int, tuple[ReplaySink, list[ReplayRecord]]] = {}
        for r in records:
            sink = self._by_name.get(r.sink, default)
            groups.setdefault(id(sink), (sink, []))[1].append(r)
        out: dict[str, str | None] = {}
        for sink, batch in groups.values():
            why = sink.replay_blocker()
            if why:
                out.update({r.entry_id: f"not replayed now: {why}" for r in batch})
            else:
                out.update(sink.replay(batch, timeout))
        return out
