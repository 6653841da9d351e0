"""/health, /stats, /positions, the metrics port's /health, the agent's JSON logs, and lag in a stall."""

from __future__ import annotations

import shlex
import signal
import subprocess
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.observability.metrics_text import parse, value
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    topic_set,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_health_stats_positions_and_logs(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines = [f"WARN disk {i} almost full" for i in range(100)]
    # app.version is deprecated and ignored: /health reports the package's version.
    cfg = agent_config(tmp_path, bootstrap, topics, app={"environment": "it-env", "version": "v9.9.9"})
    path = write_config(tmp_path / "config.yaml", cfg)
    log = tmp_path / "logs" / "app.log"
    log.write_text("".join(f"{line}\n" for line in lines))
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        consume_all(bootstrap, topics.values(), expected=len(lines), timeout=60)
        wait_until(lambda: agent.get("/stats")["sinks"]["kafka_sink"]["delivered"] == 100, 30, "acks")
        status, body = get(agent.api + "/health")
        health = orjson.loads(body)
        assert status == 200 and health["status"] == "healthy", health
        assert set(health) >= {"status", "timestamp", "version", "uptime", "services", "checks"}
        installed = version("log-capturer")
        assert health["version"] == installed
        assert health["app"] == {"name": "ssw-logs-capture", "version": installed, "environment": "it-env"}
        (sink,) = health["services"]["sinks"]
        assert {k: sink[k] for k in ("name", "status", "message")} == {
            "name": "kafka_sink",
            "status": "healthy",
            "message": "OK",
        }
        assert sink["last_check"].endswith("Z")
        assert health["checks"]["queue"]["status"] == "healthy"
        assert health["checks"]["delivery"]["status"] == "healthy"
        assert [s["name"] for s in health["services"]["sources"]] == ["file_source", "http_ingest"]

        # The design document's command, as written, with real curl and jq.
        cmd = (
            f"curl -s {shlex.quote(agent.api + '/health')} | "
            """jq '.services.sinks[] | select(.name | contains("kafka"))'"""
        )
        out = subprocess.run(
            ["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, check=True
        )
        shown = orjson.loads(out.stdout)
        assert shown["name"] == "kafka_sink" and shown["status"] == "healthy" and shown["message"] == "OK"

        metrics_health = get(agent.metrics_url.rsplit("/", 1)[0] + "/health")
        assert metrics_health == (200, b"OK")

        stats = agent.get("/stats")
        assert stats["dispatcher"]["lines_in"] == 100
        assert stats["sinks"]["kafka_sink"]["delivered_by_topic"] == {topics["logs-normal-priority"]: 100}
        assert stats["files"]["lag_bytes"] == {str(log): 0}
        positions = agent.get("/positions")["files"]
        assert positions[str(log)]["offset"] == log.stat().st_size
        assert agent.stop(signal.SIGTERM) == 0
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    # The agent's own logs: one JSON object per line, with the start-up line the design doc greps.
    entries = [orjson.loads(line) for line in (tmp_path / "agent.log").read_text().splitlines() if line]
    assert all({"time", "level", "logger", "message", "service"} <= set(e) for e in entries)
    deprecated = "app.version ('v9.9.9') is deprecated and ignored"
    ignored = [e for e in entries if e["message"].startswith(deprecated)]
    assert [e["level"] for e in ignored] == ["warning"]
    assert [e["version"] for e in entries if e["message"] == "agent started"] == [version("log-capturer")]
    started = [e for e in entries if e["message"] == "Kafka sink initialized"]
    assert len(started) == 1 and started[0]["sink"] == "kafka_sink"
    assert started[0]["environment"] == "it-env" and started[0]["service"] == "ssw-logs-capture"
    assert started[0]["producer_config"]["bootstrap.servers"] == bootstrap


def test_unacknowledged_bytes_show_as_lag_and_health_answers_503_until_delivered(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """A topic that does not exist yet: lines wait (never dropped), lag and health say so."""
    topics = topic_set(topic_prefix)
    late = topics["logs"]
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        server={"stalled_after": "2s"},
        sinks={
            "kafka": {
                "priority_routing": {"enabled": False},
                # Lines wait for the topic (no timeout to the DLQ, no overflow, no breaker): the
                # loss risk is what lag and health must show.
                "dlq_config": {"send_on_timeout": False},
                "backpressure_config": {"timeout_escalation": False},
                "circuit_breaker": {"enabled": False},
                # librdkafka fails records of an unknown topic after this (default 30 s): retried.
                "librdkafka_options": {"topic.metadata.propagation.max.ms": 2000},
            }
        },
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    log = tmp_path / "logs" / "app.log"
    log.write_text("".join(f"ERROR waiting line {i}\n" for i in range(100)))
    size = log.stat().st_size
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:

        def lagging() -> dict[str, Any] | None:
            m = parse(agent.metrics())
            ok = value(m, "file_lag_bytes", source_type="file", path=str(log)) == size
            return {"m": m} if ok and value(m, "files_lag_bytes") == size else None

        m = wait_until(lagging, 30, "the file's whole size as lag")["m"]
        assert value(m, "files_lagging") == 1

        def stalled() -> dict[str, Any] | None:
            status, body = get(agent.api + "/health")
            h = orjson.loads(body)
            return h if status == 503 and h["checks"]["delivery"]["status"] == "degraded" else None

        health = wait_until(stalled, 60, "health to report the stall with 503")
        assert health["status"] != "healthy"
        (d,) = health["checks"]["delivery"]["sinks"]
        assert d["outstanding"] == 100 and "100 lines wait" in d["message"]

        def errors_counted() -> bool:
            m = parse(agent.metrics())
            errs = [v for (n, labels), v in m.items() if n == "kafka_producer_errors_total"]
            failed = value(m, "kafka_messages_produced_total", topic=late, status="error")
            return bool(errs) and sum(errs) > 0 and failed is not None and failed > 0

        wait_until(errors_counted, 60, "delivery failures in kafka_producer_errors_total")
        m = parse(agent.metrics())
        assert value(m, "component_health", component_type="check", component_name="delivery") == 0.5
        assert value(m, "kafka_messages_produced_total", topic=late, status="success") is None

        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(late, 2, 1)])[late].result(30)
        records = consume_all(bootstrap, [late], expected=100, timeout=90)
        assert sorted(r.json()["message"] for r in records) == sorted(
            f"ERROR waiting line {i}" for i in range(100)
        )
        wait_until(
            lambda: value(parse(agent.metrics()), "file_lag_bytes", source_type="file", path=str(log)) == 0,
            30,
            "the lag to drop to zero",
        )
        wait_until(lambda: get(agent.api + "/health")[0] == 200, 30, "health to recover")
        assert agent.stop(signal.SIGTERM) == 0
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
