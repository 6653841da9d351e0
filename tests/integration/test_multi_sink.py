"""Kafka and local_file side by side, with a route: each source's lines reach the sinks it is
routed to, and a file's checkpoint moves once every one of them has its lines."""

from __future__ import annotations

import signal
from pathlib import Path

import orjson
import pytest

from tests.integration.reliability.conftest import metric
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

APP = 3000
AUDIT = 500


def local_messages(directory: Path) -> list[str]:
    return [
        orjson.loads(line)["message"]
        for p in sorted(directory.glob("*.log"))
        for line in p.read_bytes().splitlines()
    ]


def test_two_sinks_and_a_route(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    out = tmp_path / "out"
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        sinks={
            "local_file": {"enabled": True, "directory": str(out), "filename_pattern": "{source_type}.log"}
        },
    )
    # audit.log goes to the local file only; everything else to both sinks.
    cfg["routes"] = [{"source_ids": ["*/audit.log"], "sinks": ["local_file"]}]
    app, audit = tmp_path / "logs" / "app.log", tmp_path / "logs" / "audit.log"
    app.write_text("".join(f"app seq={i}\n" for i in range(APP)))
    audit.write_text("".join(f"audit seq={i}\n" for i in range(AUDIT)))
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    shipped = [t for name, t in topics.items() if name != "logs-dlq"]
    try:
        wait_until(lambda: len(local_messages(out)) >= APP + AUDIT, 120, "the local file to have every line")

        def committed() -> bool:
            pos = agent.get("/positions")["files"]
            return all(pos.get(str(p), {}).get("offset") == p.stat().st_size for p in (app, audit))

        wait_until(committed, 60, "both files' checkpoints to reach their ends")
        records = consume_all(bootstrap, shipped, expected=APP, timeout=120)
        health = agent.get("/health")
        stats = agent.get("/stats")["sinks"]
        metrics = agent.metrics()
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    in_kafka = sorted(r.json()["message"] for r in records)
    assert in_kafka == sorted(f"app seq={i}" for i in range(APP))  # once each, no audit line
    local = local_messages(out)
    assert sorted(local) == sorted(
        [f"app seq={i}" for i in range(APP)] + [f"audit seq={i}" for i in range(AUDIT)]
    )
    assert [m for m in local if m.startswith("audit")] == [f"audit seq={i}" for i in range(AUDIT)]  # in order
    assert {s["name"] for s in health["services"]["sinks"]} == {"kafka_sink", "local_file_sink"}
    assert stats["local_file_sink"]["delivered"] == APP + AUDIT and stats["kafka_sink"]["delivered"] == APP
    assert metric(metrics, "logs_sent_total", sink_type="local_file", status="success") == APP + AUDIT
    assert metric(metrics, "logs_sent_total", sink_type="kafka", status="success") == APP
    assert metric(metrics, "kafka_circuit_breaker_state", sink_name="local_file") == 0.0
    assert (
        metric(metrics, "component_health", component_type="sink", component_name="local_file_sink")
        is not None
    )
