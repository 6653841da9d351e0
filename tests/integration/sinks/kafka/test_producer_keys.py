"""`required_acks` and `queue_size` each change something the broker (or the agent's metrics) shows.
(`batch_size` and `batch_timeout`: test_batching.py; `retry_max`: test_three_nodes.py.)"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import orjson
import pytest

from log_capturer.devtools.kafka_local import LocalKafka, free_port
from tests.integration.sinks.kafka.util import metric, ship_lines
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("acks", [0, 1, -1])
def test_required_acks_delivers_and_only_all_replicas_makes_the_producer_idempotent(
    acks: int, tmp_path: Path, kafka: LocalKafka, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines = [f"ERROR acks {acks} line {i}" for i in range(2000)]
    records, _ = ship_lines(tmp_path, bootstrap, topics, lines, sinks={"kafka": {"required_acks": acks}})
    # acks 0 is fire-and-forget, yet on a healthy broker every line still arrives, once.
    assert sorted(r.json()["message"] for r in records) == sorted(lines)
    batches = kafka.stored_batches(topics["logs-high-priority"])
    assert sum(b.count for b in batches) == len(lines)
    # The broker stores a producer id and sequence numbers only for an idempotent producer.
    idempotent = {b.producer_id >= 0 and b.base_sequence >= 0 for b in batches}
    assert idempotent == {acks == -1}, batches[:3]


def test_queue_size_bounds_the_records_the_producer_holds(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """With no broker to talk to, the producer fills up to queue_size records, never more; the other
    lines wait in front of it, unread lines in the file. Pointed at the broker again, every line
    arrives, once."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    queue_size = 100
    lines = [f"WARN queued line {i}" for i in range(3000)]
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    section = {"brokers": [nowhere], "queue_size": queue_size, "timeout": "120s"}
    cfg = agent_config(
        tmp_path, bootstrap, topics, dispatcher={"drain_timeout": "1s"}, sinks={"kafka": section}
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    (tmp_path / "logs" / "app.log").write_text("".join(f"{line}\n" for line in lines))
    agent = AgentProcess(path, tmp_path / "agent-1.log").start()
    samples: list[float] = []
    try:

        def producer_full() -> bool:
            samples.append(metric(agent.metrics(), "kafka_queue_size"))
            return samples[-1] >= queue_size

        wait_until(producer_full, 60, "a full producer queue")
        for _ in range(5):
            time.sleep(0.5)
            producer_full()
        stats = agent.get("/stats")["sinks"]["kafka_sink"]
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    print(json.dumps({"queue_size": queue_size, "producer_queue_samples": samples}))
    assert max(samples) == queue_size, samples
    assert stats["delivered"] == 0 and stats["parked"] == 0, stats
    saved = orjson.loads((tmp_path / "positions" / "files.json").read_bytes())["positions"]
    assert saved[str(tmp_path / "logs" / "app.log")]["offset"] == 0
    cfg["sinks"]["kafka"]["brokers"] = bootstrap.split(",")
    write_config(path, cfg)
    agent = AgentProcess(path, tmp_path / "agent-2.log").start()
    try:
        records = consume_all(bootstrap, topics.values(), expected=len(lines), timeout=90)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    assert sorted(r.json()["message"] for r in records) == sorted(lines)
