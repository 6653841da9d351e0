"""Replaying the local store with several sinks: each entry goes back to the sink that parked it."""

from __future__ import annotations

from log_capturer.engine.replay import SinkReplay
from log_capturer.reliability.dlq.replay import ReplayRecord


class Replayer:
    """A sink's replay side: records what it was given; ``blocked`` says why it cannot now."""

    def __init__(self, name: str, blocked: str = "") -> None:
        self.name = name
        self.blocked = blocked
        self.got: list[str] = []

    def replay_blocker(self) -> str:
        return self.blocked

    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        self.got += [r.entry_id for r in records]
        return {r.entry_id: None for r in records}


def rec(entry_id: str, sink: str) -> ReplayRecord:
    return ReplayRecord(entry_id, "t", None, b"{}", sink)


def test_each_entry_goes_to_the_sink_that_parked_it_and_unknown_ones_to_the_first() -> None:
    kafka, files = Replayer("kafka_sink"), Replayer("local_file_sink")
    target = SinkReplay([kafka, files])  # type: ignore[list-item]
    out = target.replay([rec("a", "kafka_sink"), rec("b", "local_file_sink"), rec("c", "gone_sink")], 5)
    assert out == {"a": None, "b": None, "c": None}
    assert kafka.got == ["a", "c"] and files.got == ["b"]


def test_a_blocked_sink_keeps_its_entries_while_the_others_replay() -> None:
    kafka, files = Replayer("kafka_sink", blocked="the circuit breaker is open"), Replayer("local_file_sink")
    target = SinkReplay([kafka, files])  # type: ignore[list-item]
    assert target.replay_blocker() == ""
    out = target.replay([rec("a", "kafka_sink"), rec("b", "local_file_sink")], 5)
    assert out == {"a": "not replayed now: the circuit breaker is open", "b": None}
    files.blocked = "cannot write"
    assert target.replay_blocker() == "kafka_sink: the circuit breaker is open; local_file_sink: cannot write"
    assert SinkReplay([kafka]).replay_blocker() == "the circuit breaker is open"  # type: ignore[list-item]
