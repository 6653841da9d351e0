from __future__ import annotations

from log_capturer.reliability.circuit_breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, changes: list[tuple[BreakerState, BreakerState]] | None = None) -> CircuitBreaker:
    def on_change(old: BreakerState, new: BreakerState, _reason: str) -> None:
        if changes is not None:
            changes.append((old, new))

    return CircuitBreaker(10, 2, 60.0, 10, on_change=on_change, clock=clock)


def test_opens_after_ten_consecutive_failures_and_a_success_resets_the_count() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(9):
        b.record_failure("boom")
    b.record_success()
    for _ in range(9):
        b.record_failure("boom")
    assert b.state is BreakerState.CLOSED and b.allow()
    b.record_failure("boom")
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    assert b.last_failure == "boom" and b.consecutive_failures == 10 and b.times_opened == 1


def test_half_open_after_the_timeout_allows_at_most_ten_trials_and_closes_after_two_successes() -> None:
    clock = Clock()
    changes: list[tuple[BreakerState, BreakerState]] = []
    b = breaker(clock, changes)
    for _ in range(10):
        b.record_failure("down")
    clock.now += 59.9
    assert b.state is BreakerState.OPEN and not b.allow()
    assert 0 < b.retry_in() <= 0.11
    clock.now += 0.2
    assert b.state is BreakerState.HALF_OPEN
    assert [b.allow() for _ in range(11)] == [True] * 10 + [False]
    b.record_success()
    assert b.state is BreakerState.HALF_OPEN
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.allow()
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_a_failed_trial_opens_it_again_for_a_full_timeout() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(10):
        b.record_failure("down")
    clock.now += 60
    assert b.allow()
    b.record_failure("still down")
    assert b.state is BreakerState.OPEN and b.times_opened == 2
    clock.now += 59
    assert not b.allow()
    clock.now += 1
    assert b.allow()


def test_results_of_calls_made_before_it_opened_are_ignored_while_open() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(10):
        b.record_failure("down")
    b.record_success()
    b.record_success()
    assert b.state is BreakerState.OPEN
    b.record_failure("late report")
    assert b.times_opened == 1


def test_disabled_never_opens() -> None:
    b = CircuitBreaker(1, 1, 60.0, 1, enabled=False)
    for _ in range(100):
        b.record_failure("boom")
    assert b.state is BreakerState.CLOSED and b.allow()


def test_snapshot_for_health() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(10):
        b.record_failure("connection refused")
    snap = b.snapshot()
    assert snap["state"] == "open"
    assert snap["consecutive_failures"] == 10
    assert snap["retry_in_seconds"] == 60.0
    assert snap["last_failure"] == "connection refused"
