from __future__ import annotations

import itertools
import logging

import pytest

from log_capturer.config.schema import BackpressureConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.reliability import backpressure
from log_capturer.reliability.backpressure import Backpressure, Level


def events(metrics: Metrics, level: str) -> float:
    value = metrics.registry.get_sample_value(
        "kafka_backpressure_events_total", {"sink_name": "kafka", "threshold_level": level}
    )
    return value or 0.0


def test_every_level_has_a_series_at_zero_from_the_start() -> None:
    """So rate(kafka_backpressure_events_total[5m]) answers 0, not nothing, when all is well."""
    metrics = Metrics()
    Backpressure(BackpressureConfig(), metrics, "kafka_sink", "kafka")
    for level in ("warning", "critical", "emergency"):
        labels = {"sink_name": "kafka", "threshold_level": level}
        assert metrics.registry.get_sample_value("kafka_backpressure_events_total", labels) == 0.0


def test_levels_follow_the_thresholds() -> None:
    bp = Backpressure(BackpressureConfig(), Metrics(), "kafka_sink", "kafka")
    assert [bp.level_of(u) for u in (0.0, 0.74, 0.75, 0.89, 0.9, 0.94, 0.95, 1.0)] == [
        Level.NORMAL,
        Level.NORMAL,
        Level.WARNING,
        Level.WARNING,
        Level.CRITICAL,
        Level.CRITICAL,
        Level.EMERGENCY,
        Level.EMERGENCY,
    ]


def test_each_level_entered_from_below_is_counted_once() -> None:
    metrics = Metrics()
    bp = Backpressure(BackpressureConfig(), metrics, "kafka_sink", "kafka")
    for u in (0.5, 0.8, 0.85, 0.92, 0.97, 0.99, 0.5, 0.96):
        bp.observe(u)
    # 0.5 -> 0.8 warning; -> 0.92 critical; -> 0.97 emergency; back to normal; -> 0.96 all three again.
    assert events(metrics, "warning") == 2
    assert events(metrics, "critical") == 2
    assert events(metrics, "emergency") == 2
    assert bp.level is Level.EMERGENCY and bp.peak_utilization == 0.99


def test_disabled_stays_normal() -> None:
    metrics = Metrics()
    bp = Backpressure(BackpressureConfig(enabled=False), metrics, "kafka_sink", "kafka")
    assert bp.observe(1.0) is Level.NORMAL
    assert events(metrics, "emergency") == 0


def test_timeout_escalation_grows_the_wait_step_by_step() -> None:
    grow = Backpressure(BackpressureConfig(), Metrics(), "k", "k").wait_steps()
    assert grow[0] == 0.01 and grow[-1] == 1.0
    assert all(b == min(a * 2, 1.0) for a, b in itertools.pairwise(grow))
    fixed = Backpressure(BackpressureConfig(timeout_escalation=False), Metrics(), "k", "k").wait_steps()
    assert fixed == [0.1]


def test_a_waiting_chunk_puts_the_sink_at_the_critical_level_whatever_the_utilization() -> None:
    metrics = Metrics()
    bp = Backpressure(BackpressureConfig(), metrics, "kafka_sink", "kafka")
    assert bp.observe(0.6, at_least=Level.CRITICAL) is Level.CRITICAL
    assert events(metrics, "warning") == 1 and events(metrics, "critical") == 1
    assert bp.peak_utilization == 0.6  # the real utilization, not the level's threshold
    assert bp.observe(0.97, at_least=Level.CRITICAL) is Level.EMERGENCY
    off = Backpressure(BackpressureConfig(enabled=False), Metrics(), "kafka_sink", "kafka")
    assert off.observe(0.6, at_least=Level.CRITICAL) is Level.NORMAL


def test_level_changes_are_logged_at_most_once_per_interval_but_all_counted(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(backpressure.time, "monotonic", lambda: now[0])
    metrics = Metrics()
    bp = Backpressure(BackpressureConfig(), metrics, "kafka_sink", "kafka")
    with caplog.at_level(logging.INFO, logger=backpressure.__name__):
        for _ in range(50):  # a queue at full speed crosses its thresholds over and over
            bp.observe(0.8)
            bp.observe(0.1)
        assert events(metrics, "warning") == 50
        assert [r.getMessage() for r in caplog.records] == [
            "sink queue at warning level (80% full): watch it",
            "sink queue back to normal",
        ]
        caplog.clear()
        now[0] += backpressure.LOG_EVERY
        bp.observe(0.8)
        bp.observe(0.1)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "sink queue at warning level (80% full): watch it (50 times since the last message)",
        "sink queue back to normal (50 times since the last message)",
    ]
    assert [getattr(r, "times", None) for r in caplog.records] == [50, 50]
