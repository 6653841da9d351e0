"""A three-node cluster: replication 3, min.insync.replicas 2, acks=all; a broker dies mid-stream."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from log_capturer.devtools.kafka_local import LocalKafka, LocalKafkaError, free_port
from log_capturer.devtools.topics import TOPICS
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    ports = [free_port() for _ in range(3)]
    k = LocalKafka(
        tmp_path_factory.mktemp("kafka3"),
        nodes=3,
        port=ports[0],
        controller_ports=[free_port() for _ in range(3)],
        log=print,
    )
    # Nodes use port, port+1, port+2: make sure those are the ones we reserved.
    k.port = ports[0]
    try:
        if any(not _free(ports[0] + i) for i in range(3)):
            pytest.fail("consecutive free ports were not available for the 3-node cluster")
        k.up(timeout=180)
    except LocalKafkaError as exc:
        k.down()
        pytest.fail(f"the 3-node cluster did not start:\n{exc}", pytrace=False)
    yield k
    k.down()


def _free(port: int) -> bool:
    from log_capturer.devtools.kafka_local import port_in_use

    return not port_in_use(port)


def test_create_topics_with_replication_for_a_cluster(cluster: LocalKafka) -> None:
    state = cluster.load_state()
    assert state is not None
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "log_capturer",
            "kafka",
            "create-topics",
            "--bootstrap",
            state.bootstrap,
            "--replication-factor",
            "3",
            "--min-insync-replicas",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    admin = AdminClient({"bootstrap.servers": state.bootstrap})
    md = admin.list_topics(timeout=30)
    for spec in TOPICS:
        parts = md.topics[spec.name].partitions
        assert len(parts) == spec.partitions
        assert all(len(p.replicas) == 3 for p in parts.values())
    futures = admin.describe_configs([ConfigResource("topic", t.name) for t in TOPICS])
    for fut in futures.values():
        assert fut.result()["min.insync.replicas"].value == "2"


def test_a_broker_killed_mid_stream_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, cluster: LocalKafka, topic_prefix: str
) -> None:
    state = cluster.load_state()
    assert state is not None
    bootstrap = state.bootstrap
    topics = create_prefixed_topics(bootstrap, topic_prefix, replication_factor=3, min_isr=2)
    cfg = agent_config(tmp_path, bootstrap, topics, sinks={"kafka": {"required_acks": -1}})
    path = write_config(tmp_path / "config.yaml", cfg)
    levels = ["ERROR", "WARN", "INFO", "DEBUG", "NOTE"]
    lines = [f"{levels[i % 5]} replicated line {i} tenant_id=t{i % 13}" for i in range(100_000)]
    (tmp_path / "logs" / "app.log").write_text("".join(f"{line}\n" for line in lines))
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    victim = 2
    try:
        wait_until(
            lambda: agent.get("/stats")["sinks"]["kafka_sink"]["delivered"] >= 10_000,
            120,
            "the first 10,000 deliveries",
        )
        delivered_at_kill = agent.get("/stats")["sinks"]["kafka_sink"]["delivered"]
        cluster.stop_node(victim, signal.SIGKILL)
        admin = AdminClient({"bootstrap.servers": bootstrap})

        def leaders_moved() -> bool:
            md = admin.list_topics(timeout=10)
            return all(
                p.leader not in (victim, -1)
                for t in topics.values()
                for p in md.topics[t].partitions.values()
            )

        wait_until(leaders_moved, 60, "leadership to move off the killed broker")
        records = consume_all(bootstrap, topics.values(), expected=len(lines), timeout=240)
        stats = agent.get("/stats")["sinks"]["kafka_sink"]
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
        cluster.start_node(victim, timeout=180)
    counts = Counter(r.json()["message"] for r in records)
    missing = [line for line in lines if line not in counts]
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    print(
        json.dumps(
            {
                "lines": len(lines),
                "delivered_before_kill": delivered_at_kill,
                "records_read": len(records),
                "missing": len(missing),
                "duplicates": duplicates,
                "retried": stats["retried"],
            }
        )
    )
    assert not missing, f"{len(missing)} lines missing, e.g. {missing[:3]}"
    assert duplicates == 0, f"{duplicates} duplicated records with the idempotent producer"
