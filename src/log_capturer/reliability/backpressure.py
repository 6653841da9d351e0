"""Backpressure levels of a sink's queue, from ``sinks.kafka.backpressure_config``.

=========  =====================  ===================================================
level      utilization            what the sink does
=========  =====================  ===================================================
normal     below warning          nothing
warning    >= warning (0.75)      logs a warning, counts the event
critical   >= critical (0.90)     the sources are held: ``accepting()`` is false, so
                                  the dispatcher stops taking their lines and they
                                  pause their reads (files stay on disk, TCP syslog
                                  is slowed, HTTP ingest answers 429); lines already
                                  queued in the dispatcher are still produced
emergency  >= emergency (0.95)    a chunk that would take the queue past this level
                                  is not produced: it waits for room while Kafka
                                  acknowledges records, and once the sink is stalled
                                  (nothing acknowledged for ``timeout``) it and the
                                  lines behind it overflow to the local DLQ (reason
                                  ``backpressure``), to be replayed later. A
                                  threshold of 1.0 turns the overflow off: lines
                                  then wait at the queue's capacity
=========  =====================  ===================================================

With ``timeout_escalation``, lines held below the emergency level (at the
critical level, or by an open circuit breaker) overflow the same way once the
sink is stalled. A sink that is merely saturated (acknowledgements keep coming)
never overflows.

Each time the utilization rises into a level, the event is counted in
``kafka_backpressure_events_total{sink_name,threshold_level}`` (its three series
exist at 0 from the start, so ``rate()`` answers 0, not nothing, on an agent that
never needed backpressure; ``sink_name`` is the sink type, see
:mod:`log_capturer.sinks.kafka.names`). It is logged
too, at most once per ``LOG_EVERY`` seconds for each level (and for the return
to normal), like Vector's internal log rate limit: at full speed the queue
crosses its thresholds dozens of times a second, and logging each crossing cost
about 3 % of the agent's CPU in 190 log lines a second. The next message says
how many crossings it stands for.
"""

from __future__ import annotations

import logging
import threading
import time
from enum import IntEnum

from log_capturer.observability.metrics import Metrics
from log_capturer.reliability.config import BackpressureConfig

log = logging.getLogger(__name__)


class Level(IntEnum):
    NORMAL = 0
    WARNING = 1
    CRITICAL = 2
    EMERGENCY = 3

    @property
    def label(self) -> str:
        return self.name.lower()


#: Waits of a blocked sender with timeout_escalation: 10 ms doubling up to 1 s.
ESCALATION_FIRST = 0.01
ESCALATION_MAX = 1.0
#: The wait step without timeout_escalation.
FIXED_STEP = 0.1
#: Seconds between two log messages about one level (the metric counts every event).
LOG_EVERY = 10.0


class Backpressure:
    """Tracks one sink's level; :meth:`observe` is cheap enough to call once per chunk."""

    def __init__(
        self, config: BackpressureConfig, metrics: Metrics, sink_name: str, metric_label: str
    ) -> None:
        """``sink_name``: the sink in log messages; ``metric_label``: its ``sink_name`` metric label."""
        self.config = config
        self.enabled = config.enabled
        self.metrics = metrics
        self.sink_name = sink_name
        self.metric_label = metric_label
        self.level = Level.NORMAL
        self.utilization = 0.0
        self.peak_utilization = 0.0
        self.events: dict[str, int] = {lvl.label: 0 for lvl in Level if lvl is not Level.NORMAL}
        for label in self.events:
            metrics.kafka_backpressure_events.labels(metric_label, label)
        self._lock = threading.Lock()
        #: Per level label (and "normal"): when it was last logged, and events since then.
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        self._thresholds = (
            (Level.EMERGENCY, config.queue_emergency_threshold),
            (Level.CRITICAL, config.queue_critical_threshold),
            (Level.WARNING, config.queue_warning_threshold),
        )

    def level_of(self, utilization: float) -> Level:
        if not self.enabled:
            return Level.NORMAL
        for level, threshold in self._thresholds:
            if utilization >= threshold:
                return level
        return Level.NORMAL

    def observe(self, utilization: float, at_least: Level = Level.NORMAL) -> Level:
        """Record the current utilization; count and log each level it rises into. ``at_least``:
        the sink acts at that level anyway (CRITICAL: a chunk waits, as it would take the queue
        past the critical level)."""
        self.utilization = utilization
        self.peak_utilization = max(self.peak_utilization, utilization)
        level = self.level_of(utilization)
        if level < at_least and self.enabled:
            level = at_least
        if level is self.level:
            return level
        with self._lock:
            previous = self.level
            self.level = level
        if level > previous:
            for crossed in Level:
                if previous < crossed <= level:
                    self._event(crossed, utilization)
        elif level is Level.NORMAL and (times := self._may_log("normal")):
            log.info(
                "sink queue back to normal%s",
                _times(times),
                extra={"sink": self.sink_name, "utilization": round(utilization, 4), "times": times},
            )
        return level

    def _may_log(self, key: str) -> int:
        """0 while ``key`` was logged less than LOG_EVERY seconds ago (the event is counted for the
        next message), else how many events the message stands for."""
        now = time.monotonic()
        with self._lock:
            times = self._unlogged.get(key, 0) + 1
            last = self._logged_at.get(key)
            if last is not None and now - last < LOG_EVERY:
                self._unlogged[key] = times
                return 0
            self._logged_at[key] = now
            self._unlogged[key] = 0
            return times

    def _event(self, level: Level, utilization: float) -> None:
        self.events[level.label] += 1
        self.metrics.kafka_backpressure_events.labels(self.metric_label, level.label).inc()
        action = {
            Level.WARNING: "watch it",
            Level.CRITICAL: "the sources are held until there is room",
            Level.EMERGENCY: "new chunks wait; once Kafka acknowledges nothing for the timeout, they "
            "overflow to the DLQ",
        }[level]
        times = self._may_log(level.label)
        if not times:
            return
        log.warning(
            "sink queue at %s level (%.0f%% full): %s%s",
            level.label,
            utilization * 100,
            action,
            _times(times),
            extra={
                "sink": self.sink_name,
                "threshold_level": level.label,
                "utilization": utilization,
                "times": times,
            },
        )

    def wait_steps(self) -> list[float]:
        """The waits of a blocked sender, one per check while it stays blocked (then the last repeats)."""
        if not self.config.timeout_escalation:
            return [FIXED_STEP]
        steps = [ESCALATION_FIRST]
        while steps[-1] < ESCALATION_MAX:
            steps.append(min(steps[-1] * 2, ESCALATION_MAX))
        return steps


def _times(times: int) -> str:
    return f" ({times} times since the last message)" if times > 1 else ""
