"""Kafka -> agent (sources.kafka) -> OpenSearch, exactly once: the consumer is killed with
SIGKILL twice mid-run and started again; the records it reads again carry the same document ids
(topic, partition, offset), so the index holds every record exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from log_capturer.devtools.opensearch_local import LocalOpenSearch
from log_capturer.record import Chunk, Origin
from log_capturer.sinks.elasticsearch.bulk import doc_ids
from tests.conformance.harness_elasticsearch import ElasticsearchHarness, read_index
from tests.integration.reliability.test_dlq_replay import post
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


def test_records_the_server_refused_are_replayed_from_the_dlq_with_their_document_ids(
    opensearch: LocalOpenSearch, tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """An ingest pipeline refuses the records whose seq ends in 7: they are parked in the local
    DLQ with their Kafka metadata and document _id, the others indexed, and the offsets move on.
    The pipeline gone, ``POST /dlq/reprocess?all=true`` indexes them with the _id a read of the
    same topic, partition and offset gets; replayed again (as after a crash between the delivery
    and the removal from the store), they make no second document."""
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    make_topic(bootstrap, topic)
    n = 3000
    produce(bootstrap, topic, n)
    harness = ElasticsearchHarness(opensearch)
    pipeline = f"{harness.index}-refuse"
    refuse = {"fail": {"if": "ctx.message != null && ctx.message.endsWith('7')", "message": "refused"}}
    code, body = opensearch.request("PUT", f"/_ingest/pipeline/{pipeline}", {"processors": [refuse]})
    assert code == 200, body
    code, body = opensearch.request(
        "PUT", f"/{harness.index}/_settings", {"index.default_pipeline": pipeline}
    )
    assert code == 200, body
    config = consumer_config(tmp_path, bootstrap, topic, group)
    data = yaml.safe_load(config.read_text())
    data["sinks"]["local_file"] = {"enabled": False}
    data["sinks"]["elasticsearch"] = harness.config({"op_type": "create"})
    write_config(config, data)
    dlq = tmp_path / "dlq"
    refused = n // 10
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: indexed(opensearch, harness.index) >= n - refused, 120, "the accepted records")
        ends = end_offsets(bootstrap, topic)
        # Parked counts as done: the offsets pass the refused records.
        wait_until(lambda: committed(bootstrap, group, topic) == ends, 60, "the offsets at the end")
        parked = [
            orjson.loads(line) for f in dlq.glob("dlq_entry_*.json") for line in f.read_bytes().splitlines()
        ]
        assert len(parked) == refused
        assert {e["failed_sink"] for e in parked} == {"elasticsearch_sink"}
        for e in parked:
            kafka = e["original_entry"]["fields"]["kafka"]
            assert e["key"] == document_id(kafka), e
            assert e["original_entry"]["message"].endswith("7")
        saved = {f.name: f.read_bytes() for f in dlq.glob("dlq_entry_*.json")}
        code, body = opensearch.request(
            "PUT", f"/{harness.index}/_settings", {"index.default_pipeline": "_none"}
        )
        assert code == 200, body
        status, replay = post(agent.api + "/dlq/reprocess?all=true")
        assert status == 200 and replay["delivered"] == refused and replay["remaining"] == 0, replay
        assert indexed(opensearch, harness.index) == n
        # The entries back in the store, as if the agent had died before removing them.
        for name, content in saved.items():
            (dlq / name).write_bytes(content)
        status, again = post(agent.api + "/dlq/reprocess?all=true")
        assert status == 200 and again["delivered"] == refused and again["remaining"] == 0, again
    finally:
        assert agent.stop() == 0, agent.log()
    docs = read_index(opensearch, harness.index)
    assert len(docs) == n, f"{len(docs) - n} second documents"
    assert Counter(int(d["message"].rsplit("=", 1)[1]) for d in docs) == Counter(range(n))
    for d in docs:
        assert d["_id"] == document_id(d["fields"]["kafka"]), d
    print(f"kafka -> opensearch, {refused} of {n} records refused, parked and replayed twice: indexed once")
    opensearch.request("DELETE", f"/{harness.index}")
    opensearch.request("DELETE", f"/_ingest/pipeline/{pipeline}")


def document_id(kafka: dict[str, Any]) -> str:
    """The _id the Elasticsearch sink gives the record read at ``kafka``'s topic, partition, offset."""
    chunk = Chunk(Origin("kafka", kafka["topic"]), ["any text"])
    chunk.offsets = [kafka["offset"]]
    chunk.stream = f"{kafka['topic']}:{kafka['partition']}"
    return doc_ids(chunk)[0]
