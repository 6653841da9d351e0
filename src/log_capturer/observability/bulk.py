"""A Prometheus histogram fed a batch at a time.

``prometheus_client.Histogram.observe`` takes a lock per value; on the hot path
we observe whole chunks instead: either values sorted once (C speed), whose
bucket counts are found by bisection, or bucket counts made elsewhere (the Kafka
sink's record sizes are counted in C, ``sinks.kafka.encode.tally``).
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
        at_most = [bisect.bisect_right(values, b) for b in self.bounds]
        self.observe_buckets(labels, at_most, len(values), float(sum(values)))

    def observe_buckets(
        self, labels: tuple[str, ...], at_most: Sequence[int], count: int, total: float
    ) -> None:
        """Add ``count`` values summing to ``total``, of which ``at_most[i]`` are <= bounds[i]."""
        if not count:
            return
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [0.0] * (len(self.bounds) + 2)
            for i, c in enumerate(at_most):
                series[i] += c
            series[-2] += count
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
