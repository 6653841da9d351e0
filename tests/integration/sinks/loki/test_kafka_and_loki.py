"""Kafka and Loki side by side (and Kafka, Loki and Elasticsearch), in the agent as a process:
with Loki (a real VictoriaLogs) away, Kafka has every line but the file's checkpoint does not
move; once Loki is back every store has every line once and the checkpoint reaches the end.
/health, /stats, the metrics and ``log-capturer status`` show the Loki sink."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.opensearch_local import LocalOpenSearch
from log_capturer.devtools.victorialogs_local import LOKI_PUSH_PATH, LocalVictoriaLogs
from tests.conformance.harness_elasticsearch import ElasticsearchHarness, read_index
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

LINES = 3000


def test_a_line_is_checkpointed_only_when_kafka_and_loki_both_have_it(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    server = LocalVictoriaLogs(tmp_path / "victorialogs", port=free_port())
    server.up(timeout=60)
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        sinks={
            "loki": {
                "enabled": True,
                "url": server.url,
                "push_endpoint": LOKI_PUSH_PATH,
                "default_labels": {"job": "multi"},
                "batch_timeout": "20ms",
                "timeout": "300s",
                "circuit_breaker": {"timeout": "1s"},
            }
        },
    )
    cfg["sinks"]["kafka"]["priority_routing"] = {"enabled": False}
    app = tmp_path / "logs" / "app.log"
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log")

    def offset() -> int:
        entry = agent.get("/positions")["files"].get(str(app), {})
        return int(entry.get("offset", -1))

    try:
        server.stop()
        app.write_text("".join(f"multi seq={i}\n" for i in range(LINES)))
        agent.start()
        in_kafka = consume_all(bootstrap, [topics["logs"]], expected=LINES, timeout=120)
        assert len(in_kafka) == LINES
        time.sleep(2)  # positions are saved every 500 ms: a move would show by now
        assert offset() <= 0, "the checkpoint moved while Loki did not have the lines"
        health = {s["name"]: s for s in agent.get("/health")["services"]["sinks"]}
        assert health["loki_sink"]["status"] != "healthy", health["loki_sink"]
        assert health["kafka_sink"]["status"] == "healthy", health["kafka_sink"]
        server.up(timeout=60)
        wait_until(lambda: offset() == app.stat().st_size, 120, "the checkpoint to reach the end")
        stats = agent.get("/stats")["sinks"]
        metrics = agent.metrics()
        status = subprocess.run(
            [
                sys.executable,
                "-m",
                "log_capturer",
                "status",
                "--api",
                f"http://127.0.0.1:{cfg['server']['port']}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
        server.down()
        server.up(timeout=60)
    try:
        got = Counter(r["message"] for r in server.query('{job="multi"}'))
    finally:
        server.down()
    assert sorted(got) == sorted(f"multi seq={i}" for i in range(LINES))
    assert set(got.values()) == {1}
    assert stats["loki_sink"]["delivered"] == LINES and stats["loki_sink"]["parked"] == 0
    assert stats["kafka_sink"]["delivered"] == LINES
    assert metric(metrics, "logs_sent_total", sink_type="loki", status="success") == LINES
    assert (metric(metrics, "sink_requests_total", sink_type="loki", status="204") or 0) > 0
    assert (metric(metrics, "sink_requests_total", sink_type="loki", status="error") or 0) > 0
    assert metric(metrics, "component_health", component_type="sink", component_name="loki_sink") is not None
    assert status.returncode == 0, status.stderr
    assert "loki_sink" in status.stdout, status.stdout


def test_kafka_loki_and_elasticsearch_a_line_is_checkpointed_only_when_all_three_have_it(
    tmp_path: Path, bootstrap: str, topic_prefix: str, opensearch: LocalOpenSearch
) -> None:
    """The issue's three sinks at once, each on its real server: with Loki stopped, Kafka and
    OpenSearch get every line but the checkpoint stays; once Loki is back it reaches the end, and
    each store holds every line exactly once."""
    server = LocalVictoriaLogs(tmp_path / "victorialogs", port=free_port())
    server.up(timeout=60)
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    es = ElasticsearchHarness(opensearch)
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        sinks={
            "loki": {
                "enabled": True,
                "url": server.url,
                "push_endpoint": LOKI_PUSH_PATH,
                "default_labels": {"job": "three"},
                "batch_timeout": "20ms",
                "timeout": "300s",
                "circuit_breaker": {"timeout": "1s"},
            },
            "elasticsearch": es.config({"timeout": "300s", "circuit_breaker": {"timeout": "2s"}}),
        },
    )
    cfg["sinks"]["kafka"]["priority_routing"] = {"enabled": False}
    app = tmp_path / "logs" / "app.log"
    app.write_text("".join(f"before seq={i}\n" for i in range(LINES)))
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()

    def offset() -> int:
        return int(agent.get("/positions")["files"].get(str(app), {}).get("offset", -1))

    try:
        wait_until(lambda: offset() == app.stat().st_size, 120, "the first lines checkpointed")
        server.stop()
        end_before = app.stat().st_size
        with app.open("a") as f:
            f.write("".join(f"during seq={i}\n" for i in range(LINES)))
        records = consume_all(bootstrap, [topics["logs"]], expected=2 * LINES, timeout=120)
        wait_until(
            lambda: len(read_index(opensearch, es.index)) >= 2 * LINES, 120, "OpenSearch to have every line"
        )
        time.sleep(2)
        assert offset() == end_before, "the checkpoint moved while Loki did not have the lines"
        server.up(timeout=60)
        wait_until(lambda: offset() == app.stat().st_size, 180, "the checkpoint to reach the end")
        stats = agent.get("/stats")["sinks"]
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
        if server.pid() is None:
            server.up(timeout=60)
    try:
        in_loki = Counter(r["message"] for r in server.query('{job="three"}'))
    finally:
        server.down()
    want = Counter([f"before seq={i}" for i in range(LINES)] + [f"during seq={i}" for i in range(LINES)])
    assert Counter(r.json()["message"] for r in records) == want
    assert Counter(d["message"] for d in read_index(opensearch, es.index)) == want
    assert in_loki == want
    for name in ("kafka_sink", "loki_sink", "elasticsearch_sink"):
        assert stats[name]["delivered"] == 2 * LINES and stats[name]["parked"] == 0, (name, stats[name])
    opensearch.request("DELETE", f"/{es.index}")
