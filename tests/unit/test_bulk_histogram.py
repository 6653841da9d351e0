from __future__ import annotations

from prometheus_client import CollectorRegistry

from log_capturer.observability.bulk import BulkHistogram


def test_bulk_observation_matches_per_value_buckets() -> None:
    reg = CollectorRegistry()
    h = BulkHistogram("sizes", "doc", ["topic"], [10, 100], reg)
    h.observe_many(("a",), [5, 10, 50, 500])
    h.observe_sorted(("a",), [1])
    get = reg.get_sample_value
    assert get("sizes_bucket", {"topic": "a", "le": "10.0"}) == 3
    assert get("sizes_bucket", {"topic": "a", "le": "100.0"}) == 4
    assert get("sizes_bucket", {"topic": "a", "le": "+Inf"}) == 5
    assert get("sizes_count", {"topic": "a"}) == 5 and get("sizes_sum", {"topic": "a"}) == 566
