"""The Elasticsearch sink against the session's real OpenSearch node, under real faults: per-item
rejections of a ``_bulk`` answer (a mapping conflict, a closed index, a read-only index block), a
write thread pool too small for the load (429 ``es_rejected_execution_exception``), the server
away for 30 s. Every case is asserted by reading the index back (and the local DLQ)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.devtools.opensearch_local import LocalOpenSearch
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Chunk, Origin
from log_capturer.reliability.dlq.replay import ReplayRecord
from tests.conformance.harness_elasticsearch import ElasticsearchHarness, read_index
from tests.conformance.test_sink_conformance import Rig
from tests.support import wait_until

pytestmark = pytest.mark.integration


def make_index(
    node: LocalOpenSearch, name: str, mappings: dict[str, Any] | None = None, shards: int = 1
) -> None:
    body: dict[str, Any] = {"settings": {"number_of_shards": shards, "number_of_replicas": 0}}
    if mappings:
        body["mappings"] = mappings
    code, answer = node.request("PUT", f"/{name}", body)
    assert code == 200, answer


def feed_meta(rig: Rig, origin: Origin, lines: list[str], meta: list[dict[str, Any] | None] | None) -> Chunk:
    chunk = Chunk(origin, lines, 0, 0, meta=meta)
    cp = Checkpoint()
    assert rig.dispatcher.submit(chunk, cp, timeout=60)
    rig.submitted([chunk])
    return chunk


def settle(rig: Rig, lines: int, timeout: float = 90) -> None:
    wait_until(
        lambda: all(c.done for c in rig.chunks), timeout, "every line acknowledged (delivered or parked)"
    )
    stats = rig.stats()
    assert stats["outstanding"] == 0 and stats["produced"] == lines, stats


def test_rejected_items_go_to_the_dlq_with_their_error_and_the_good_items_are_delivered(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    """One _bulk request holds good documents and documents refused for their own sake: a field
    sent as a string where the index maps an object (mapper_parsing_exception), a closed index
    (index_closed_exception), an index with a write block (cluster_block_exception)."""
    base = harness.index
    make_index(
        opensearch,
        f"{base}-map",
        {"properties": {"fields": {"properties": {"x": {"properties": {"a": {"type": "long"}}}}}}},
    )
    make_index(opensearch, f"{base}-closed")
    make_index(opensearch, f"{base}-blocked")
    assert opensearch.request("POST", f"/{base}-closed/_close")[0] == 200
    code, answer = opensearch.request("PUT", f"/{base}-blocked/_block/write")
    assert code == 200, answer
    delivery = {"index_field": "labels.ix", "batch": {"timeout": "300ms", "max_events": 1000}}
    with Rig(harness, tmp_path, delivery) as rig:
        feed_meta(rig, Origin("file", "good", {"ix": base}), [f"good {i}" for i in range(20)], None)
        feed_meta(
            rig,
            Origin("file", "map", {"ix": f"{base}-map"}),
            [f"map {i}" for i in range(6)],
            [{"x": {"a": i}} if i % 2 == 0 else {"x": f"text {i}"} for i in range(6)],
        )
        feed_meta(rig, Origin("file", "closed", {"ix": f"{base}-closed"}), ["closed 0", "closed 1"], None)
        feed_meta(rig, Origin("file", "blocked", {"ix": f"{base}-blocked"}), ["blocked 0"], None)
        settle(rig, 29)
        stats = rig.stats()
    assert sorted(d["message"] for d in read_index(opensearch, base)) == sorted(
        f"good {i}" for i in range(20)
    )
    assert sorted(d["message"] for d in read_index(opensearch, f"{base}-map")) == ["map 0", "map 2", "map 4"]
    parked = {str(e["original_entry"]["message"]): e for e in rig.parked()}
    assert sorted(parked) == ["blocked 0", "closed 0", "closed 1", "map 1", "map 3", "map 5"], sorted(parked)
    for msg, entry in parked.items():
        assert entry["error_type"] == "send_error", entry
        assert entry["failed_sink"] == "elasticsearch_sink", entry
        text = str(entry["error_message"])
        want = {
            "map": "mapper_parsing_exception",
            "closed": "index_closed_exception",
            "blocked": "cluster_block_exception",
        }
        assert want[msg.split()[0]] in text, (msg, text)
    assert stats["delivered"] == 23 and stats["parked"] == 6, stats
    assert rig.sent("success") == 23 and rig.sent("dlq") == 6
    errors = rig.metrics.registry.get_sample_value
    assert (
        errors(
            "elasticsearch_item_errors_total",
            {"sink_name": "elasticsearch_sink", "error_type": "mapper_parsing_exception"},
        )
        == 3
    )


def test_a_replayed_dlq_entry_keeps_its_document_id(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    """A document refused by a write block is parked with its _id; once the block is lifted the
    DLQ's replay writes it, and a second replay of the same entry makes no second document."""
    assert opensearch.request("PUT", f"/{harness.index}/_block/write")[0] == 200
    with Rig(harness, tmp_path) as rig:
        chunk = Chunk(Origin("file", "/var/log/replayed.log"), ["one", "two"], 0, 8)
        cp = Checkpoint()
        assert rig.dispatcher.submit(chunk, cp, timeout=60)
        rig.submitted([chunk])
        settle(rig, 2)
        entries = rig.parked()
        assert len(entries) == 2
        code, answer = opensearch.request("PUT", f"/{harness.index}/_settings", {"index.blocks.write": False})
        assert code == 200, answer
        records = [
            ReplayRecord(str(e["entry_id"]), str(e["topic"]), e["key"], orjson.dumps(e["original_entry"]))
            for e in entries
        ]
        assert all(r.key for r in records), records
        for _ in range(2):
            results = rig.sink.replay(records, 30)  # type: ignore[attr-defined]
            assert set(results.values()) == {None}, results
    docs = read_index(opensearch, harness.index)
    assert Counter(d["message"] for d in docs) == {"one": 1, "two": 1}
    assert {d["_id"] for d in docs} == {r.key for r in records}


def test_a_saturated_write_thread_pool_429_is_retried_until_everything_is_in(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    """The node restarted with one write thread and a queue of four: concurrent _bulk requests to
    an index of four shards get 429 es_rejected_execution_exception (per item or per request);
    the sink sends those again (alone, then with back-off) until every line is in, none parked."""
    opensearch.stop()
    opensearch.settings = {"thread_pool.write.size": "1", "thread_pool.write.queue_size": "4"}
    try:
        opensearch.up(timeout=180)
        opensearch.request("DELETE", f"/{harness.index}")
        make_index(opensearch, harness.index, shards=4)
        delivery = {
            "concurrency": 4,
            "batch": {"max_events": 50, "timeout": "5ms"},
            "timeout": "300s",
            "circuit_breaker": {"timeout": "1s"},
        }
        n = 6000
        with Rig(harness, tmp_path, delivery) as rig:
            threads = [
                threading.Thread(
                    target=rig.feed,
                    args=(Origin("file", f"src{k}"), [f"s{k} {i}" for i in range(n // 4)], Checkpoint(), 50),
                )
                for k in range(4)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            settle(rig, n, 240)
            get = rig.metrics.registry.get_sample_value
            # OpenSearch names it rejected_execution_exception, Elasticsearch es_rejected_execution_exception.
            item_429 = sum(
                get("elasticsearch_item_errors_total", {"sink_name": "elasticsearch_sink", "error_type": t})
                or 0
                for t in ("rejected_execution_exception", "es_rejected_execution_exception")
            )
            request_429 = get("sink_requests_total", {"sink_type": "elasticsearch", "status": "429"})
            assert (item_429 or 0) + (request_429 or 0) > 0, (
                "the node never answered 429: the test proves nothing"
            )
            assert not rig.parked()
            assert rig.stats()["delivered"] == n
        docs = read_index(opensearch, harness.index)
        counts = Counter(d["message"] for d in docs)
        assert len(counts) == n and set(counts.values()) == {1}
    finally:
        opensearch.stop()
        opensearch.settings = {}
        opensearch.up(timeout=180)


def test_the_server_away_for_30_s_loses_nothing(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    """Stopped for 30 s with lines flowing, then started again: every line is in the index once,
    nothing parked, and no chunk was acknowledged while the server was away."""
    delivery = {"timeout": "120s", "circuit_breaker": {"timeout": "2s"}}
    with Rig(harness, tmp_path, delivery) as rig:
        rig.feed(Origin("file", "before"), [f"before {i}" for i in range(500)], Checkpoint(), 100)
        wait_until(lambda: all(c.done for c in rig.chunks), 60, "the first lines delivered")
        harness.make_unavailable()
        away = rig.feed(Origin("file", "away"), [f"away {i}" for i in range(500)], Checkpoint(), 100)
        time.sleep(30)
        assert not any(c.done for c in away), "a line was acknowledged while the server was away"
        harness.make_available()
        settle(rig, 1000)
        assert not rig.parked()
    counts = Counter(d["message"] for d in read_index(opensearch, harness.index))
    assert len(counts) == 1000 and set(counts.values()) == {1}
