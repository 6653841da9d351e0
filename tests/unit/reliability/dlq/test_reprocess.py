from __future__ import annotations

import logging
from pathlib import Path

import pytest

from log_capturer.config.schema import DispatcherDLQConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.reliability.dlq import DeadLetterStore, DLQEntry
from log_capturer.reliability.dlq.replay import ReplayRecord
from log_capturer.reliability.dlq.reprocess import SKIP_LOG_EVERY, Reprocessor


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Target:
    """A replay target whose blocker the test sets; it acknowledges every record it is given."""

    def __init__(self) -> None:
        self.blocker = ""
        self.replayed: list[str] = []

    def replay_blocker(self) -> str:
        return self.blocker

    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        self.replayed += [r.entry_id for r in records]
        return {r.entry_id: None for r in records}


def parked(tmp_path: Path, clock: Clock, n: int) -> DeadLetterStore:
    config = DispatcherDLQConfig.model_validate(
        {"directory": str(tmp_path / "dlq"), "reprocessing_config": {"initial_delay": 0, "min_entry_age": 0}}
    )
    store = DeadLetterStore(config, None, clock)
    store.park(
        [
            DLQEntry({"message": f"line {i}"}, "timed out", "timeout", "kafka_sink", topic="logs")
            for i in range(n)
        ]
    )
    return store


def waits(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("DLQ reprocessing waits")]


def test_a_skipped_round_says_why_once_per_reason_and_again_while_it_lasts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    store = parked(tmp_path, clock, 3)
    target = Target()
    rp = Reprocessor(store, store.config.reprocessing_config, target, Metrics(), clock=clock)
    caplog.set_level(logging.INFO, logger="log_capturer.reliability.dlq.reprocess")

    target.blocker = "no broker is reachable"
    assert rp.run_once()["status"] == "skipped"
    clock.now += 1
    rp.run_once()
    assert waits(caplog) == ["DLQ reprocessing waits: no broker is reachable (3 entries parked)"]

    target.blocker = "the circuit breaker is open"
    rp.run_once()
    clock.now += SKIP_LOG_EVERY
    rp.run_once()
    assert waits(caplog)[1:] == ["DLQ reprocessing waits: the circuit breaker is open (3 entries parked)"] * 2

    target.blocker = ""
    summary = rp.run_once()
    assert summary["status"] == "completed" and summary["remaining"] == 0, summary
    assert len(target.replayed) == 3
    # Nothing waits any more: a skipped round has nothing to say.
    target.blocker = "the circuit breaker is open"
    rp.run_once()
    assert len(waits(caplog)) == 3
