"""The whole pipeline, against the test session's real Kafka, OpenSearch and VictoriaLogs: files
-> agent (files_config, Kafka sink) -> Kafka -> two consumer groups (sources.kafka), one writing
to OpenSearch, one to VictoriaLogs (its Loki push API).

The OpenSearch consumer is killed with SIGKILL at three random points and started again each
time; the records it reads again carry the same document ids (topic, partition, offset), so the
index holds every line exactly once. VictoriaLogs does not deduplicate: every line is there at
least once, and what was written twice is counted (nothing, as that consumer is never killed).

A store that refuses some documents (a mapping they do not fit): those are parked in the local
DLQ with the store's reason, the others indexed, and the group's offsets reach the end.

(The kill -9 twice test of test_kafka_source_to_elasticsearch.py is a subset of the first test.)"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from log_capturer.devtools.opensearch_local import LocalOpenSearch
from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs
from tests.conformance.harness_elasticsearch import ElasticsearchHarness, read_index
from tests.integration.sinks.kafka.util import dlq_entries
from tests.integration.sources.test_kafka_source import (
    committed,
    consumer_config,
    end_offsets,
    make_topic,
)
from tests.support import (
    AgentProcess,
    agent_config,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

LEVELS = ("ERROR", "WARN", "INFO", "DEBUG", "NOTE")


def indexed(node: LocalOpenSearch, index: str) -> int:
    """The index's document count, by the _count API."""
    node.request("POST", f"/{index}/_refresh")
    code, body = node.request("GET", f"/{index}/_count")
    return int(body["count"]) if code == 200 else 0


def partitions_of(bootstrap: str, topics: list[str]) -> list[TopicPartition]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "partitions-reader"})
    try:
        md = c.list_topics(timeout=30)
        return [TopicPartition(t, p) for t in topics for p in sorted(md.topics[t].partitions)]
    finally:
        c.close()


def group_at_the_end(bootstrap: str, group: str, parts: list[TopicPartition]) -> bool:
    """Whether ``group`` committed every partition of ``parts`` at its high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        ends = {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        got = {(tp.topic, tp.partition): tp.offset for tp in c.committed(parts, timeout=10)}
        return all(got[k] == end or (end == 0 and got[k] < 0) for k, end in ends.items())
    finally:
        c.close()


def seq_of(message: str) -> int:
    return int(message.rsplit("=", 1)[1])


def test_files_to_kafka_to_opensearch_exactly_once_and_victorialogs_at_least_once(
    opensearch: LocalOpenSearch,
    victorialogs: LocalVictoriaLogs,
    tmp_path: Path,
    bootstrap: str,
    topic_prefix: str,
) -> None:
    seed = random.randrange(1 << 30)
    print(f"kill points from random seed {seed}")
    rng = random.Random(seed)
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    # Every level goes to its priority topic (ERROR high, WARN/INFO normal, DEBUG low, NOTE logs).
    read = [topics[t] for t in ("logs", "logs-high-priority", "logs-normal-priority", "logs-low-priority")]
    subscribe = [f"^{topic_prefix}-logs(-(high|normal|low)-priority)?$"]
    parts = partitions_of(bootstrap, read)
    n, bursts = 10_000, 20
    run = uuid.uuid4().hex[:12]

    # The shipper: tails two files and writes to Kafka.
    ship_dir = tmp_path / "shipper"
    ship_cfg = write_config(ship_dir / "config.yaml", agent_config(ship_dir, bootstrap, topics))
    files = [ship_dir / "logs" / "a.log", ship_dir / "logs" / "b.log"]

    def write_lines() -> None:
        per = n // bursts
        for b in range(bursts):
            with files[b % 2].open("a") as f:
                f.write("".join(f"{LEVELS[i % 5]} e2e line seq={i}\n" for i in range(b * per, (b + 1) * per)))
            time.sleep(0.6)

    # The OpenSearch consumer (killed three times) and the VictoriaLogs consumer (another group).
    harness = ElasticsearchHarness(opensearch)
    os_dir, vl_dir = tmp_path / "to-opensearch", tmp_path / "to-victorialogs"
    os_dir.mkdir()
    vl_dir.mkdir()
    os_cfg = consumer_config(
        os_dir,
        bootstrap,
        read[0],
        f"{topic_prefix}-os",
        topics=subscribe,
        max_in_flight=2000,
        batch_size=500,
        # Static membership (as a StatefulSet would run it): the consumer started again after a
        # kill takes its partitions back at once, not after session_timeout (the three-consumer
        # test of test_kafka_source.py covers a member that is gone for good).
        librdkafka_options={"group.instance.id": f"{topic_prefix}-os-0"},
    )
    data = yaml.safe_load(os_cfg.read_text())
    data["sinks"]["local_file"] = {"enabled": False}
    data["sinks"]["elasticsearch"] = harness.config()
    write_config(os_cfg, data)
    vl_cfg = consumer_config(vl_dir, bootstrap, read[0], f"{topic_prefix}-vl", topics=subscribe)
    data = yaml.safe_load(vl_cfg.read_text())
    data["sinks"]["local_file"] = {"enabled": False}
    data["sinks"]["loki"] = {
        "enabled": True,
        "url": victorialogs.url,
        "push_endpoint": "/insert/loki/api/v1/push",
        "default_labels": {"run": run},
        "batch_timeout": "50ms",
        "timeout": "30s",
    }
    write_config(vl_cfg, data)

    writer = threading.Thread(target=write_lines)
    shipper = AgentProcess(ship_cfg, ship_dir / "agent.log").start()
    writer.start()
    to_vl = AgentProcess(vl_cfg, vl_dir / "agent.log").start()
    reads, kills = 0, []
    to_os: AgentProcess | None = None
    # Three kill points, as document counts: the first in the first fifth of the run, each next
    # one a fifth to a quarter of the lines later.
    points = [rng.randrange(n // 20, n // 5)]
    for _ in range(2):
        points.append(points[-1] + rng.randrange(n // 5, n // 4))
    try:
        for k, at in enumerate(points):
            to_os = AgentProcess(os_cfg, os_dir / f"agent{k}.log").start()
            wait_until(
                lambda at=at, agent=to_os: (
                    indexed(opensearch, harness.index) >= at and agent.get("/stats")["kafka"]["consumed"] > 0
                ),
                120,
                f"{at} documents, this consumer reading",
            )
            reads += to_os.get("/stats")["kafka"]["consumed"]
            to_os.stop(9)
            kills.append(indexed(opensearch, harness.index))
        to_os = AgentProcess(os_cfg, os_dir / "agent-last.log").start()
        writer.join(60)
        wait_until(
            lambda: shipper.get("/stats")["sinks"]["kafka_sink"]["delivered"] >= n,
            120,
            "every line shipped",
        )
        wait_until(lambda: indexed(opensearch, harness.index) >= n, 180, "every line indexed")
        wait_until(
            lambda: group_at_the_end(bootstrap, f"{topic_prefix}-os", parts),
            60,
            "the OpenSearch group's offsets",
        )
        reads += to_os.get("/stats")["kafka"]["consumed"]
        assert to_os.stop() == 0, to_os.log()
        wait_until(lambda: victorialogs.count(f'{{run="{run}"}}') >= n, 180, "every line in VictoriaLogs")
        wait_until(
            lambda: group_at_the_end(bootstrap, f"{topic_prefix}-vl", parts),
            60,
            "the VictoriaLogs group's offsets",
        )
    finally:
        writer.join(60)
        if to_os is not None and to_os.proc is not None and to_os.proc.poll() is None:
            to_os.kill()
        codes = {"to_vl": to_vl.stop(), "shipper": shipper.stop()}
    assert codes == {"to_vl": 0, "shipper": 0}, f"{to_vl.log()}\n{shipper.log()}"
    assert indexed(opensearch, harness.index) == n, "the _count API: one document per line"
    docs = read_index(opensearch, harness.index)
    counts = Counter(seq_of(d["message"]) for d in docs)
    assert set(counts) == set(range(n)), f"{n - len(counts)} lines missing from OpenSearch"
    assert len(docs) == n, f"{len(docs) - n} lines indexed twice"
    in_vl = Counter(
        seq_of(str(r.get("message") or r.get("_msg"))) for r in victorialogs.query(f'{{run="{run}"}}')
    )
    assert set(in_vl) == set(range(n)), f"{n - len(in_vl)} lines missing from VictoriaLogs"
    vl_duplicates = sum(in_vl.values()) - n
    print(
        f"files -> kafka -> opensearch / victorialogs (seed {seed}): {n} lines; OpenSearch consumer killed "
        f"at {kills} documents, {reads - n} records read twice, every line indexed once; "
        f"VictoriaLogs: {vl_duplicates} lines written twice"
    )
    assert reads > n, "the kills should have made the consumer read some records again"
    # The VictoriaLogs consumer was never killed nor rebalanced: nothing was read twice.
    assert vl_duplicates == 0
    opensearch.request("DELETE", f"/{harness.index}")


def test_documents_the_mapping_refuses_are_parked_with_the_reason_and_the_offsets_move_on(
    opensearch: LocalOpenSearch, tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """An index whose mapping makes ``fields.amount`` a number: records whose amount is not one
    are refused per item of the _bulk answer (400 mapper_parsing_exception)."""
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    make_topic(bootstrap, topic)
    harness = ElasticsearchHarness(opensearch)
    code, body = opensearch.request(
        "PUT",
        f"/{harness.index}/_mapping",
        {"properties": {"fields": {"properties": {"amount": {"type": "long"}}}}},
    )
    assert code == 200, body
    n = 2000
    bad = {i for i in range(n) if i % 97 == 5}
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i in range(n):
        value: dict[str, Any] = {"message": f"payment seq={i}", "fields": {"amount": i}}
        if i in bad:
            value["fields"]["amount"] = f"not a number {i}"
        p.produce(topic, orjson.dumps(value), key=str(i).encode())
    assert p.flush(30) == 0
    config = consumer_config(tmp_path, bootstrap, topic, group, format="json")
    data = yaml.safe_load(config.read_text())
    data["sinks"]["local_file"] = {"enabled": False}
    data["sinks"]["elasticsearch"] = harness.config()
    write_config(config, data)
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: indexed(opensearch, harness.index) >= n - len(bad), 120, "the documents that fit")
        ends = end_offsets(bootstrap, topic)
        wait_until(lambda: committed(bootstrap, group, topic) == ends, 60, f"the offsets committed to {ends}")
        stats = agent.get("/stats")
    finally:
        assert agent.stop() == 0, agent.log()
    docs = read_index(opensearch, harness.index)
    assert sorted(seq_of(d["message"]) for d in docs) == sorted(set(range(n)) - bad)
    parked = dlq_entries(tmp_path / "dlq")
    assert sorted(seq_of(e["original_entry"]["message"]) for e in parked) == sorted(bad), stats
    for e in parked:
        assert e["failed_sink"] == "elasticsearch_sink", e
        assert "400 mapper_parsing_exception" in e["error_message"], e
        assert "amount" in e["error_message"], e
    print(
        f"kafka -> opensearch, a strict mapping: {len(bad)} of {n} refused and parked, the offsets at {ends}"
    )
    opensearch.request("DELETE", f"/{harness.index}")
