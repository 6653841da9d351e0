"""Kafka -> agent (sources.kafka) -> OpenSearch, exactly once: the consumer is killed with
SIGKILL twice mid-run and started again; the records it reads again carry the same document ids
(topic, partition, offset), so the index holds every record exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from log_capturer.devtools.opensearch_local import LocalOpenSearch
from tests.conformance.harness_elasticsearch import ElasticsearchHarness, read_index
from tests.integration.sources.test_kafka_source import (
    committed,
    consumer_config,
    end_offsets,
    make_topic,
    produce,
)
from tests.support import AgentProcess, wait_until, write_config

pytestmark = pytest.mark.integration


def indexed(node: LocalOpenSearch, index: str) -> int:
    node.request("POST", f"/{index}/_refresh")
    code, body = node.request("GET", f"/{index}/_count")
    return int(body["count"]) if code == 200 else 0


def test_kill_9_twice_leaves_every_record_exactly_once_in_the_index(
    opensearch: LocalOpenSearch, tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    make_topic(bootstrap, topic)
    n = 20_000
    produce(bootstrap, topic, n)
    harness = ElasticsearchHarness(opensearch)
    config = consumer_config(tmp_path, bootstrap, topic, group, max_in_flight=4000, batch_size=1000)
    data = yaml.safe_load(config.read_text())
    data["sinks"]["local_file"] = {"enabled": False}
    data["sinks"]["elasticsearch"] = harness.config()
    write_config(config, data)
    reads = 0
    for kill, at in enumerate((n // 4, n // 2)):
        agent = AgentProcess(config, tmp_path / f"agent{kill}.log").start()
        wait_until(lambda at=at: indexed(opensearch, harness.index) >= at, 120, f"{at} documents")
        reads += agent.get("/stats")["kafka"]["consumed"]
        agent.stop(9)
    agent = AgentProcess(config, tmp_path / "agent-last.log").start()
    try:
        wait_until(lambda: indexed(opensearch, harness.index) >= n, 180, "every record indexed")
        ends = end_offsets(bootstrap, topic)
        wait_until(lambda: committed(bootstrap, group, topic) == ends, 60, "the offsets at the end")
        reads += agent.get("/stats")["kafka"]["consumed"]
    finally:
        assert agent.stop() == 0
    docs = read_index(opensearch, harness.index)
    counts = Counter(int(d["message"].rsplit("=", 1)[1]) for d in docs)
    assert set(counts) == set(range(n)), f"{n - len(counts)} records lost"
    assert len(docs) == n, f"{len(docs) - n} records indexed twice"
    print(f"kafka -> opensearch, kill -9 twice: {n} records, {reads - n} read twice, indexed once")
    assert reads > n, "the kills should have made the consumer read some records again"
    opensearch.request("DELETE", f"/{harness.index}")
