"""Health: the checks behind ``GET /health`` and the ``component_health`` gauge.

A check is a JSON object with at least ``status`` (``healthy``, ``degraded``
or ``unhealthy``); the overall status is the worst of the sinks', the
sources' and the checks'. ``GET /health`` answers 200 only when it is
``healthy``. The same states are exported at scrape time as
``component_health{component_type,component_name}``: 1 healthy, 0.5
degraded, 0 unhealthy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from log_capturer.sinks.base import Status

_RANK: dict[str, int] = {"healthy": 0, "degraded": 1, "unhealthy": 2}
VALUE: dict[str, float] = {"healthy": 1.0, "degraded": 0.5, "unhealthy": 0.0}
#: Dispatcher queue fill at which the agent reports itself degraded (sources are being slowed).
QUEUE_DEGRADED_AT = 0.9

Check = dict[str, Any]
#: (component_type, component_name, status)
Component = tuple[str, str, str]


def worst(statuses: Iterable[str]) -> Status:
    """The worst status of ``statuses`` (an unknown word counts as unhealthy); healthy when empty."""
    rank = max((_RANK.get(s, 2) for s in statuses), default=0)
    result: Status = "healthy" if rank == 0 else ("degraded" if rank == 1 else "unhealthy")
    return result


def queue_check(utilization: float, size: int, capacity: int) -> Check:
    """The dispatcher queue: degraded from :data:`QUEUE_DEGRADED_AT` full."""
    return {
        "status": "healthy" if utilization < QUEUE_DEGRADED_AT else "degraded",
        "utilization": round(utilization, 4),
        "size": size,
        "capacity": capacity,
        "degraded_at": QUEUE_DEGRADED_AT,
    }


class StallDetector:
    """Degraded when lines wait for acknowledgement and none was acknowledged for ``after`` seconds.

    Sink-independent: it reads a sink's ``outstanding`` and acknowledged counts (``/stats``). A
    sink whose records fail and are retried in a loop never says so itself; this check does. The
    clock starts at the first look, so a stall is reported from the second look on.
    """

    def __init__(self, after: float) -> None:
        self.after = after
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, float]] = {}

    def check(self, name: str, outstanding: int, acknowledged: int) -> Check:
        now = time.monotonic()
        with self._lock:
            last = self._seen.get(name)
            if last is None or last[0] != acknowledged or outstanding == 0:
                last = self._seen[name] = (acknowledged, now)
        idle = now - last[1]
        check: Check = {"status": "healthy", "outstanding": outstanding, "acknowledged": acknowledged}
        if outstanding > 0 and idle >= self.after:
            check["status"] = "degraded"
            check["message"] = f"{outstanding} lines wait; none acknowledged for {idle:.0f}s"
        return check


class ComponentHealthCollector(Collector):
    """``component_health``, evaluated when Prometheus scrapes (no cost in between)."""

    def __init__(self, components: Callable[[], list[Component]]) -> None:
        self._components = components

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "component_health",
            "Health of each sink, source and check: 1 healthy, 0.5 degraded, 0 unhealthy.",
            labels=["component_type", "component_name"],
        )
        for kind, name, status in self._components():
            family.add_metric([kind, name], VALUE.get(status, 0.0))
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily("component_health", "", labels=["component_type", "component_name"])
