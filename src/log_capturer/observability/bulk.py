"""A Prometheus histogram fed a batch at a time.

``prometheus_client.Histogram.observe`` takes a lock per value; on the hot path
we observe whole chunks instead: the values are sorted once (C speed) and the
bucket counts found by bisection, so the cost per value is a few nanoseconds.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector


class BulkHistogram(Collector):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.bounds = sorted(buckets)
        self._series: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe_sorted(self, labels: tuple[str, ...], values: Sequence[float]) -> None:
        """Add ``values`` (sorted ascending) to the series ``labels``."""
        if not values:
            return
        counts = [bisect.bisect_right(values, b) for b in self.bounds]
        total = float(sum(values))
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [0.0] * (len(self.bounds) + 2)
            for i, c in enumerate(counts):
                series[i] += c
            series[-2] += len(values)
            series[-1] += total

    def observe_many(self, labels: tuple[str, ...], values: Iterable[float]) -> None:
        self.observe_sorted(labels, sorted(values))

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            snapshot = {k: list(v) for k, v in self._series.items()}
        for labels, series in snapshot.items():
            buckets = [(_fmt(b), series[i]) for i, b in enumerate(self.bounds)]
            buckets.append(("+Inf", series[-2]))
            family.add_metric(list(labels), buckets, series[-1])
        yield family

    def describe(self) -> Iterable[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)


def _fmt(bound: float) -> str:
    return str(float(bound))
