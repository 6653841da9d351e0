"""The supervision helper: back-off, restarts, the reported state, normal ends."""

from __future__ import annotations

import threading

import pytest

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import QueueClosed
from log_capturer.sources import supervise
from log_capturer.sources.supervise import Backoff, Supervisor
from tests.support import wait_until


def crashes(metrics: Metrics, component: str) -> float | None:
    return metrics.registry.get_sample_value("errors_total", {"component": component, "error_type": "crash"})


def test_backoff_doubles_up_to_the_maximum_and_resets() -> None:
    b = Backoff()
    assert [b.next() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    b.reset()
    assert b.next() == 1.0


def test_a_crashed_loop_is_restarted_after_recover_and_is_healthy_after_a_turn() -> None:
    metrics = Metrics()
    sup = Supervisor("file_source", metrics, Backoff(0.01, 0.01))
    stop = threading.Event()
    calls: list[str] = []

    def loop() -> None:
        calls.append("loop")
        if len(calls) == 1:
            raise ValueError("bad value")
        sup.ok()
        stop.wait()

    thread = threading.Thread(target=sup.run, args=(loop, stop, lambda: calls.append("recover")))
    thread.start()
    try:
        wait_until(lambda: sup.health()["status"] == "healthy" and sup.restarts == 1, 10, "a restart")
    finally:
        stop.set()
        thread.join(10)
    assert calls == ["loop", "recover", "loop"]
    h = sup.health()
    assert h["restarts"] == 1 and h["crashes"] == 1
    assert h["last_error"] == "ValueError: bad value"
    assert "message" not in h
    assert crashes(metrics, "file_source") == 1
    assert not thread.is_alive()


def test_degraded_with_the_error_while_waiting_and_a_stop_ends_the_wait() -> None:
    sup = Supervisor("stdin_source", Metrics(), Backoff(3600, 3600))
    stop = threading.Event()

    def loop() -> None:
        raise RuntimeError("boom")

    thread = threading.Thread(target=sup.run, args=(loop, stop))
    thread.start()
    wait_until(lambda: sup.crashes == 1, 10, "the crash")
    h = sup.health()
    assert h["status"] == "degraded"
    assert h["message"] == "crashed: RuntimeError: boom; restarts: 0"
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and sup.restarts == 0


def test_unhealthy_after_crashes_in_a_row_then_healthy_again() -> None:
    sup = Supervisor("syslog_source", Metrics(), Backoff(0.001, 0.001))
    stop = threading.Event()
    turns = [0]
    seen: list[str] = []

    def loop() -> None:
        turns[0] += 1
        if turns[0] <= supervise.UNHEALTHY_AFTER:
            raise OSError("no such device")
        seen.append(sup.health()["status"])
        sup.ok()
        stop.wait()

    thread = threading.Thread(target=sup.run, args=(loop, stop))
    thread.start()
    try:
        wait_until(lambda: seen, 10, "a successful turn")
    finally:
        stop.set()
        thread.join(10)
    assert seen == ["unhealthy"]
    assert sup.health()["status"] == "healthy"
    assert sup.crashes == supervise.UNHEALTHY_AFTER


def test_queue_closed_and_a_return_are_normal_ends() -> None:
    metrics = Metrics()
    for end in (QueueClosed, None):
        sup = Supervisor("file_source", metrics, Backoff(0.001, 0.001))

        def loop(end: type[Exception] | None = end) -> None:
            if end is not None:
                raise end

        sup.run(loop, threading.Event())
        assert sup.health()["status"] == "healthy" and sup.crashes == 0 and sup.restarts == 0
    assert crashes(metrics, "file_source") is None


def test_a_thread_ended_by_a_base_exception_is_unhealthy() -> None:
    sup = Supervisor("stdin_source", Metrics())

    def loop() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        sup.run(loop, threading.Event())
    h = sup.health()
    assert h["status"] == "unhealthy" and h["message"] == "stopped: SystemExit: 3; not restarted"


def test_a_long_run_restarts_the_backoff_from_the_first_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervise, "STABLE_AFTER", 0.0)
    waits: list[float] = []

    class Recording(Backoff):
        def next(self) -> float:
            waits.append(super().next())
            return 0.0

    sup = Supervisor("file_source", Metrics(), Recording(1.0, 30.0))
    turns = [0]

    def loop() -> None:
        turns[0] += 1
        if turns[0] <= 3:
            raise ValueError(turns[0])

    sup.run(loop, threading.Event())
    assert waits == [1.0, 1.0, 1.0]
