"""The stop flag a signal handler sets while the main thread waits for it."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType

import pytest

from log_capturer import signals
from log_capturer.signals import StopFlag


def test_a_signal_handled_inside_wait_sets_the_flag_and_ends_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flag = StopFlag()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        flag.set()  # a threading.Event's set() here would wait for the lock its own thread holds

    previous = signal.signal(signal.SIGUSR1, on_signal)
    sleeps = [0]
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        sleeps[0] += 1
        if sleeps[0] == 2:
            os.kill(os.getpid(), signal.SIGUSR1)  # delivered in this (the main) thread, inside wait
        real_sleep(seconds)

    monkeypatch.setattr(signals.time, "sleep", sleep)
    try:
        started = time.monotonic()
        assert flag.wait(30.0) is True
        assert time.monotonic() - started < 5.0
        assert flag.is_set()
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_wait_returns_false_after_its_timeout_and_true_once_another_thread_set_it() -> None:
    flag = StopFlag()
    assert flag.wait(0.01) is False
    threading.Timer(0.05, flag.set).start()
    assert flag.wait(10.0) is True
