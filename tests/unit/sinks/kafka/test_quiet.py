from __future__ import annotations

import logging

import pytest

from log_capturer.sinks.kafka.quiet import RepeatFilter, Repeats


def test_repeats_within_the_window_are_dropped_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("log_capturer.sinks.kafka.quiet.time.monotonic", lambda: now[0])
    r = Repeats(window=10)
    assert r.admit("refused") == 0
    assert [r.admit("refused") for _ in range(5)] == [None] * 5
    assert r.admit("other") == 0
    now[0] += 10
    assert r.admit("refused") == 5


def test_the_filter_sums_up_what_it_dropped(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test-quiet")
    logger.addFilter(RepeatFilter(window=3600))
    with caplog.at_level(logging.WARNING, logger="test-quiet"):
        for _ in range(50):
            logger.warning("Connect to %s failed", "127.0.0.1:9092")
    assert [r.getMessage() for r in caplog.records] == ["Connect to 127.0.0.1:9092 failed"]
