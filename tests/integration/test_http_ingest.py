"""POST /api/v1/logs on a real agent process: answers, records in a real Kafka broker, a full queue."""

from __future__ import annotations

import gzip
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.devtools.kafka_local import free_port
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


def post(
    agent: AgentProcess, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    req = urllib.request.Request(
        agent.api + "/api/v1/logs",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, orjson.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read()), dict(exc.headers)


def test_ingested_records_reach_kafka_and_bad_requests_get_4xx(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        http_ingest={"labels": {"env": "test"}, "max_body_bytes": 4096},
    )
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    try:
        status, body, _ = post(
            agent,
            orjson.dumps(
                {
                    "message": "card declined",
                    "level": "WARNING",
                    "source_type": "checkout",
                    "source_id": "pod-7",
                    "labels": {"tenant_id": "acme"},
                    "timestamp": "2026-11-25T08:00:00.123456789Z",
                    "order": 42,
                }
            ),
        )
        assert (status, body) == (200, {"status": "accepted", "accepted": 1})
        ndjson = b"".join(orjson.dumps({"message": f"ERROR batch line {i}"}) + b"\n" for i in range(50))
        assert post(agent, ndjson)[:2] == (200, {"status": "accepted", "accepted": 50})
        array = orjson.dumps(
            [{"message": "debug: from an array", "level": "debug"}, {"message": "no level here"}]
        )
        assert post(agent, array)[:2] == (200, {"status": "accepted", "accepted": 2})
        gz = gzip.compress(orjson.dumps({"message": "compressed body", "level": "info"}))
        assert post(agent, gz, {"Content-Encoding": "gzip"})[:2] == (
            200,
            {"status": "accepted", "accepted": 1},
        )

        for bad, reason in [
            (b"{not json", "line 1: invalid JSON"),
            (b'{"level": "info"}', "record 1: 'message' is missing"),
            (b'{"message": ""}', "record 1: 'message' is empty"),
            (
                b'{"message": "a"}\n{"message": "b", "labels": {"x": 1}}',
                "record 2: label 'x' must be a string",
            ),
            (b'{"message": "a", "level": "loud"}', "unknown level 'loud'"),
        ]:
            status, body, _ = post(agent, bad)
            assert status == 400, (bad, body)
            assert body["status"] == "rejected" and reason in body["error"], body
        status, body, _ = post(agent, orjson.dumps({"message": "x" * 5000}))
        assert status == 413 and "max_body_bytes" in body["error"]

        records = consume_all(bootstrap, topics.values(), expected=54, timeout=60)
        assert len(records) == 54, agent.log()
        docs = {r.json()["message"]: (r.topic, r.key, r.json()) for r in records}
        topic, key, doc = docs["card declined"]
        assert topic == topics["logs-normal-priority"] and key == b"acme"
        assert doc == {
            "timestamp": "2026-11-25T08:00:00.123456789Z",
            "message": "card declined",
            "level": "warn",
            "source_type": "checkout",
            "source_id": "pod-7",
            "labels": {"env": "test", "tenant_id": "acme"},
            "fields": {"order": 42},
        }
        topic, key, doc = docs["ERROR batch line 7"]
        assert (topic, doc["level"], doc["source_type"], doc["source_id"]) == (
            topics["logs-high-priority"],
            "error",
            "api",
            "http",
        )
        assert key == b"http"
        assert docs["debug: from an array"][0] == topics["logs-low-priority"]
        assert docs["no level here"][2]["level"] == "" and docs["no level here"][0] == topics["logs"]
        assert docs["compressed body"][2]["level"] == "info"

        metrics = wait_until(
            lambda: (m := agent.metrics()) and 'http_ingest_requests_total{code="413"} 1.0' in m and m,
            30,
            "the request metrics",
        )
        assert 'http_ingest_requests_total{code="200"} 4.0' in metrics
        assert 'http_ingest_requests_total{code="400"} 5.0' in metrics
        assert 'source_lines_received_total{source="http_ingest",transport="http"} 54.0' in metrics
        assert agent.get("/stats")["http_ingest"]["accepted"] == 54
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_a_full_queue_gets_429_and_unacknowledged_records_503(tmp_path: Path, bootstrap: str) -> None:
    """A stalled sink (its broker address answers nothing) fills a tiny dispatcher queue."""
    topics = {
        t: t for t in ("logs", "logs-high-priority", "logs-normal-priority", "logs-low-priority", "logs-dlq")
    }
    dead = f"127.0.0.1:{free_port()}"
    cfg = agent_config(
        tmp_path,
        dead,
        topics,
        dispatcher={"queue_size": 10, "worker_count": 1, "drain_timeout": "2s"},
        sinks={"kafka": {"queue_size": 1}},
        http_ingest={"queue_timeout": "200ms", "ack_timeout": "1s"},
    )
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    try:
        batch = b"".join(orjson.dumps({"message": f"line {i}"}) + b"\n" for i in range(5))
        status, body, headers = post(agent, batch)
        assert status == 503, body
        assert body["status"] == "timeout" and body["accepted"] == 5
        assert "not acknowledged" in body["error"]
        seen: list[int] = []
        for _ in range(20):  # bounded: the queue holds 10 lines, each request brings 5
            status, body, headers = post(agent, batch)
            seen.append(status)
            if status == 429:
                break
        assert seen[-1] == 429, seen
        assert body == {
            "status": "rejected",
            "accepted": 0,
            "error": "the dispatcher queue is full; nothing was queued, retry later",
        }
        assert headers["Retry-After"] == "1"
        assert set(seen[:-1]) <= {503}
        assert 'http_ingest_requests_total{code="429"} 1.0' in agent.metrics()
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
