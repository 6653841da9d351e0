"""The labelled-children cache of :mod:`log_capturer.observability.metrics`."""

from __future__ import annotations

import threading

from log_capturer.observability.metrics import Children, Metrics


def _processed(m: Metrics, source_id: str, pipeline: str) -> float | None:
    labels = {"source_type": "file", "source_id": source_id, "pipeline": pipeline}
    return m.registry.get_sample_value("logs_processed_total", labels)


def test_children_counts_into_the_metric_s_series_and_looks_each_up_once() -> None:
    m = Metrics()
    cache = Children(m.logs_processed)
    # Nothing exported before a child is first used, as with labels().
    assert _processed(m, "a", "p") is None
    first = cache.get("file", "a", "p")
    assert cache.get("file", "a", "p") is first
    assert first is m.logs_processed.labels("file", "a", "p")
    cache.get("file", "a", "p").inc(3)
    cache.get("file", "b", "p").inc(2)
    assert _processed(m, "a", "p") == 3
    assert _processed(m, "b", "p") == 2
    assert len(cache) == 2


def test_children_from_several_threads_count_every_increment() -> None:
    m = Metrics()
    cache = Children(m.logs_processed)

    def work() -> None:
        for i in range(2000):
            cache.get("file", f"s{i % 7}", "default").inc()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    total = sum(_processed(m, f"s{i}", "default") or 0 for i in range(7))
    assert total == 8000
    assert len(cache) == 7
