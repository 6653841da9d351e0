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


def test_bucket_counts_made_elsewhere_add_up_with_sorted_values() -> None:
    reg = CollectorRegistry()
    h = BulkHistogram("sizes", "doc", ["topic"], [10, 100], reg)
    h.observe_buckets(("a",), [1, 2], 3, 600.0)  # 5, 50, 545
    h.observe_sorted(("a",), [10, 100])
    get = reg.get_sample_value
    assert get("sizes_bucket", {"topic": "a", "le": "10.0"}) == 2
    assert get("sizes_bucket", {"topic": "a", "le": "100.0"}) == 4
    assert get("sizes_count", {"topic": "a"}) == 5 and get("sizes_sum", {"topic": "a"}) == 710
