"""One of two sinks broken: the other keeps its lines coming, the broken one parks what it cannot
take within its budget (its ``timeout``), the sources' checkpoints move, and once it recovers the
DLQ's reprocessing gives it what it parked. Kafka stopped while local_file writes; local_file's
directory made immutable while Kafka receives."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.devtools.kafka_local import LocalKafka
from tests.integration.reliability.conftest import broker_running, own_bootstrap
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

BEFORE = 1000
DURING = 2000
TOTAL = BEFORE + DURING

REPROCESSING = {
    "interval": "1s",
    "initial_delay": "1s",
    "min_entry_age": "0s",
    "max_delay": "3s",
    "max_retries": 100,
    "batch_size": 1000,
}


def local_seqs(directory: Path) -> Counter[int]:
    return Counter(
        int(orjson.loads(line)["message"].split("=")[1])
        for p in sorted(directory.glob("*.log"))
        for line in p.read_bytes().splitlines()
    )


def kafka_seqs(bootstrap: str, topics: dict[str, str], expected: int) -> Counter[int]:
    shipped = [t for name, t in topics.items() if name != "logs-dlq"]
    records = consume_all(bootstrap, shipped, expected=expected, timeout=180)
    return Counter(int(r.json()["message"].split("=")[1]) for r in records)


def append(path: Path, start: int, count: int) -> None:
    with path.open("a") as f:
        f.write("".join(f"seq={i}\n" for i in range(start, start + count)))


def setup(
    tmp_path: Path, bootstrap: str, topic_prefix: str, local: dict[str, Any]
) -> tuple[AgentProcess, Path, Path, dict[str, str]]:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    out = tmp_path / "out"
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        sinks={
            "kafka": {"timeout": "5s", "circuit_breaker": {"timeout": "2s"}},
            "local_file": {"enabled": True, "directory": str(out), "filename_pattern": "out.log", **local},
        },
        dispatcher={"dlq_config": {"reprocessing_config": REPROCESSING}},
    )
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    return agent, tmp_path / "logs" / "app.log", out, topics


def committed(agent: AgentProcess, path: Path) -> bool:
    return agent.get("/positions")["files"].get(str(path), {}).get("offset") == path.stat().st_size


def parked_by(agent: AgentProcess, sink: str) -> int:
    return int(agent.get("/stats")["sinks"][sink]["parked"])


def test_kafka_stopped_while_local_file_keeps_writing(
    tmp_path: Path, own_kafka: LocalKafka, topic_prefix: str
) -> None:
    bootstrap = own_bootstrap(own_kafka)
    agent, log, out, topics = setup(tmp_path, bootstrap, topic_prefix, {})
    try:
        append(log, 0, BEFORE)
        wait_until(lambda: sum(local_seqs(out).values()) >= BEFORE, 60, "the first lines in the file")
        kafka_seqs(bootstrap, topics, BEFORE)
        own_kafka.stop_node(1)
        append(log, BEFORE, DURING)
        # The file gets every line while Kafka is away, and the checkpoint reaches the end of the
        # log once Kafka's share is parked (its timeout is the budget).
        wait_until(
            lambda: sum(local_seqs(out).values()) >= TOTAL, 60, "local_file to write while Kafka is down"
        )
        wait_until(lambda: committed(agent, log), 90, "the checkpoint to move while Kafka is down")
        assert not broker_running(own_kafka)
        parked = parked_by(agent, "kafka_sink")
        health = agent.get("/health")["services"]["sinks"]
        own_kafka.start_node(1, timeout=120)
        wait_until(
            lambda: agent.get("/dlq/stats")["entries"] == 0, 180, "Kafka's parked lines to be replayed"
        )
        in_kafka = kafka_seqs(bootstrap, topics, TOTAL)
        local_stats = agent.get("/stats")["sinks"]["local_file_sink"]
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
        if not broker_running(own_kafka):
            own_kafka.start_node(1, timeout=120)
    assert parked > 0
    by_name = {s["name"]: s["status"] for s in health}
    assert by_name["local_file_sink"] == "healthy" and by_name["kafka_sink"] != "healthy", health
    assert set(in_kafka) == set(range(TOTAL)), (
        f"missing in Kafka: {sorted(set(range(TOTAL)) - set(in_kafka))[:5]}"
    )
    assert local_seqs(out) == Counter(range(TOTAL))  # every line once, never parked
    assert local_stats["parked"] == 0, local_stats


@pytest.fixture
def immutable() -> Any:
    paths: list[Path] = []
    yield paths
    subprocess.run(["chattr", "-i", *map(str, paths)], check=False)


def test_local_file_directory_unwritable_while_kafka_keeps_receiving(
    tmp_path: Path, own_kafka: LocalKafka, topic_prefix: str, immutable: list[Path]
) -> None:
    bootstrap = own_bootstrap(own_kafka)
    local = {"timeout": "3s", "circuit_breaker": {"timeout": "1s"}}
    agent, log, out, topics = setup(tmp_path, bootstrap, topic_prefix, local)
    try:
        append(log, 0, BEFORE)
        wait_until(lambda: sum(local_seqs(out).values()) >= BEFORE, 60, "the first lines in the file")
        kafka_seqs(bootstrap, topics, BEFORE)
        immutable += [out, out / "out.log"]
        subprocess.run(["chattr", "+i", *map(str, immutable)], check=True)
        append(log, BEFORE, DURING)
        in_kafka = kafka_seqs(bootstrap, topics, TOTAL)
        wait_until(
            lambda: committed(agent, log), 90, "the checkpoint to move while the directory refuses writes"
        )
        parked = parked_by(agent, "local_file_sink")
        health = {s["name"]: s for s in agent.get("/health")["services"]["sinks"]}
        assert sum(local_seqs(out).values()) == BEFORE  # nothing got through meanwhile
        subprocess.run(["chattr", "-i", *map(str, immutable)], check=True)
        wait_until(lambda: agent.get("/dlq/stats")["entries"] == 0, 180, "the parked lines to be written")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        subprocess.run(["chattr", "-i", *map(str, immutable)], check=False)
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    assert in_kafka == Counter(range(TOTAL)), "Kafka got every line once while the file sink was broken"
    assert parked > 0
    assert health["kafka_sink"]["status"] == "healthy"
    assert health["local_file_sink"]["status"] == "unhealthy", health
    assert local_seqs(out) == Counter(range(TOTAL))  # every line once: parked ones written by the replay
