"""Per-file lag: bytes written to a file that Kafka has not acknowledged yet (the loss risk).

The lag of a followed file is its size at the last look minus its
acknowledged offset (what the positions file would save). It is computed when
Prometheus scrapes, from the tailers' state, so reading costs nothing:

- ``file_lag_bytes{source_type,path}``: one series per file, for the
  ``metrics.file_lag_series_limit`` files with the largest lag (ties by path),
  so a node with thousands of files cannot flood Prometheus; a file that drops
  out of that set stops being exported until it is among them again;
- ``files_lag_bytes``: the sum over every followed file, never capped;
- ``files_lagging``: how many followed files have a lag above zero.

Rotated files still being read count under their rotated name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _Checkpoint(Protocol):
    @property
    def committed(self) -> int: ...


class _Origin(Protocol):
    @property
    def source_type(self) -> str: ...


class _Followed(Protocol):
    """What the collector reads of a followed file (``sources.file.tail.TailedFile``)."""

    @property
    def path(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def checkpoint(self) -> _Checkpoint: ...

    @property
    def origin(self) -> _Origin: ...


#: (source_type, path, lag in bytes)
FileLag = tuple[str, str, int]


def file_lags(files: Iterable[_Followed]) -> list[FileLag]:
    return [(f.origin.source_type, f.path, max(0, f.size - f.checkpoint.committed)) for f in files if f.path]


class FileLagCollector(Collector):
    def __init__(self, lags: Callable[[], list[FileLag]], limit: int) -> None:
        self._lags = lags
        self.limit = limit

    def collect(self) -> Iterable[GaugeMetricFamily]:
        lags = self._lags()
        per_file = GaugeMetricFamily(
            "file_lag_bytes",
            "Bytes of a followed file not yet acknowledged by Kafka (size - acknowledged offset), "
            "for the metrics.file_lag_series_limit files with the largest lag.",
            labels=["source_type", "path"],
        )
        for source_type, path, lag in sorted(lags, key=lambda x: (-x[2], x[1]))[: self.limit]:
            per_file.add_metric([source_type, path], lag)
        yield per_file
        yield GaugeMetricFamily(
            "files_lag_bytes",
            "Bytes of all followed files not yet acknowledged by Kafka.",
            value=sum(lag for _, _, lag in lags),
        )
        yield GaugeMetricFamily(
            "files_lagging",
            "Followed files with unacknowledged bytes.",
            value=sum(1 for _, _, lag in lags if lag > 0),
        )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily("file_lag_bytes", "", labels=["source_type", "path"])
        yield GaugeMetricFamily("files_lag_bytes", "")
        yield GaugeMetricFamily("files_lagging", "")
