"""POST /api/v1/logs on a real agent process: answers, records in a real Kafka broker, a full queue."""

from __future__ import annotations

import gzip
import signal
import struct
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest

from log_capturer.devtools.kafka_local import free_port
from log_capturer.processing.timestamps import NS, parse_rfc3339
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    run_cli,
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
        assert (status, body) == (200, {"status": "accepted", "accepted": 1, "rejected": 0})
        ndjson = b"".join(orjson.dumps({"message": f"ERROR batch line {i}"}) + b"\n" for i in range(50))
        assert post(agent, ndjson)[:2] == (200, {"status": "accepted", "accepted": 50, "rejected": 0})
        array = orjson.dumps(
            [{"message": "debug: from an array", "level": "debug"}, {"message": "no level here"}]
        )
        assert post(agent, array)[:2] == (200, {"status": "accepted", "accepted": 2, "rejected": 0})
        gz = gzip.compress(orjson.dumps({"message": "compressed body", "level": "info"}))
        assert post(agent, gz, {"Content-Encoding": "gzip"})[:2] == (
            200,
            {"status": "accepted", "accepted": 1, "rejected": 0},
        )

        # Only a body that cannot be read at all is refused (bad records: test_bad_records_...).
        for bad, content_type, reason in [
            (b"{not json", "application/json", "record 1: not JSON"),
            (b"hello world", "text/plain", "record 1: not JSON"),
            (b'[{"message": "cut', "application/json", "not a valid JSON array"),
            (b"\xc1\xc1", "application/msgpack", "msgpack cannot be decoded"),
            (b"", "application/json", "empty body"),
        ]:
            status, body, _ = post(agent, bad, {"Content-Type": content_type})
            assert status == 400, (bad, body)
            assert body["status"] == "rejected" and reason in body["error"], body
            assert "NDJSON" in body["error"] and "msgpack" in body["error"]
        status, body, _ = post(agent, b"not gzip", {"Content-Encoding": "gzip"})
        assert status == 400 and "the body cannot be read (Content-Encoding: gzip)" in body["error"], body
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
        assert 'http_ingest_requests_total{code="400"} 6.0' in metrics
        assert 'source_lines_received_total{source="http_ingest",transport="http"} 54.0' in metrics
        assert agent.get("/stats")["http_ingest"]["accepted"] == 54
        assert "Traceback" not in agent.log()
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


def curl(
    agent: AgentProcess, tmp: Path, body: bytes, content_type: str, gzipped: bool = False
) -> tuple[int, Any]:
    """POST ``body`` with curl (a real client) as a file, like ``curl --data-binary @FILE``."""
    path = tmp / f"body-{time.monotonic_ns()}"
    path.write_bytes(gzip.compress(body) if gzipped else body)
    cmd = ["curl", "-sS", "--max-time", "60", "-w", "\n%{http_code}", "-H", f"Content-Type: {content_type}"]
    if gzipped:
        cmd += ["-H", "Content-Encoding: gzip"]
    cmd += ["--data-binary", f"@{path}", agent.api + "/api/v1/logs"]
    done = subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    assert done.returncode == 0, f"curl failed: {done.stderr.decode()}"
    text, _, code = done.stdout.rpartition(b"\n")
    return int(code), orjson.loads(text)


def event_time(ns: int) -> msgpack.ExtType:
    """Fluent's EventTime as Fluent Bit packs it: msgpack extension 0, seconds and nanoseconds."""
    return msgpack.ExtType(0, struct.pack(">II", ns // NS, ns % NS))


T0 = 1_764_057_600_000_000_000  # 2025-11-25T08:00:00Z


def test_bad_records_go_to_the_dlq_and_the_rest_to_kafka_in_every_format(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(tmp_path, bootstrap, topics)
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    try:
        # NDJSON with bad records among 200 good ones.
        lines = [
            orjson.dumps({"message": f"ndjson {i}", "labels": {"tenant_id": "acme"}}) for i in range(200)
        ]
        lines[10:10] = [
            b'{"message": ""}',
            b'{"log": "   "}',
            b"{not json",
            b'{"text": "no message key"}',
            b"42",
            b'{"message": "bad labels", "labels": {"n": 1}}',
        ]
        status, body = curl(agent, tmp_path, b"\n".join(lines) + b"\n", "application/x-ndjson")
        assert status == 200, body
        assert (body["status"], body["accepted"], body["rejected"]) == ("accepted", 200, 6)
        assert body["rejected_by_reason"] == {
            "empty_message": 2,
            "invalid_json": 1,
            "missing_message": 1,
            "not_an_object": 1,
            "invalid_field": 1,
        }
        assert [(e["record"], e["reason"], e["outcome"]) for e in body["errors"]] == [
            (11, "empty_message", "parked"),
            (12, "empty_message", "parked"),
            (13, "invalid_json", "parked"),
            (14, "missing_message", "parked"),
            (15, "not_an_object", "parked"),
            (16, "invalid_field", "parked"),
        ]
        assert body["errors"][0]["error"] == "record 11: 'message' is empty"

        # Fluent Bit's http output, as it sends them: Format json (an array, `date` in epoch seconds
        # with fractions, `log`), Format json_lines (NDJSON), and its default Format msgpack
        # ([[EventTime, metadata], record] events) with `compress gzip`. An empty line it tailed
        # is an empty `log`.
        fb = [{"date": (T0 + i * 1_000_000) / NS, "log": f"fluent json {i}\n"} for i in range(100)]
        fb.insert(50, {"date": T0 / NS, "log": ""})
        status, body = curl(agent, tmp_path, orjson.dumps(fb), "application/json")
        assert (status, body["accepted"], body["rejected"]) == (200, 100, 1), body
        assert body["errors"][0]["error"] == "record 51: 'log' is empty"
        fb_lines = b"".join(
            orjson.dumps({"date": T0 / NS, "log": f"fluent lines {i}"}) + b"\n" for i in range(100)
        )
        assert curl(agent, tmp_path, fb_lines, "application/x-ndjson")[0] == 200
        events = [
            msgpack.packb([[event_time(T0 + i), {}], {"log": f"fluent msgpack {i}\n", "stream": "stdout"}])
            for i in range(100)
        ]
        events.insert(3, msgpack.packb([[event_time(T0), {}], {"log": "\n", "stream": "stdout"}]))
        status, body = curl(agent, tmp_path, b"".join(events), "application/msgpack", gzipped=True)
        assert (status, body["accepted"], body["rejected"]) == (200, 100, 1), body

        # Vector's http sink (codec json, newline-delimited), Logstash's http output, and Pino.
        vector = b"".join(
            orjson.dumps(
                {
                    "message": f"vector {i}",
                    "timestamp": "2025-11-25T08:00:01.5Z",
                    "host": "h1",
                    "source_type": "file",
                }
            )
            + b"\n"
            for i in range(10)
        )
        assert curl(agent, tmp_path, vector, "application/x-ndjson")[1]["accepted"] == 10
        logstash = {"@timestamp": "2025-11-25T08:00:02.000Z", "@version": "1", "message": "logstash line"}
        assert curl(agent, tmp_path, orjson.dumps(logstash), "application/json")[1]["accepted"] == 1
        pino = {"level": 50, "time": T0 // 1_000_000 + 3, "pid": 7, "hostname": "h2", "msg": "pino line"}
        assert curl(agent, tmp_path, orjson.dumps(pino), "application/json")[1]["accepted"] == 1

        good = 200 + 100 + 100 + 100 + 10 + 1 + 1
        records = consume_all(bootstrap, topics.values(), expected=good, timeout=60)
        assert len(records) == good, agent.log()
        assert not [r for r in records if r.topic == topics["logs-dlq"]]
        docs = {r.json()["message"]: (r.topic, r.json()) for r in records}
        assert {f"ndjson {i}" for i in range(200)} <= set(docs)
        _, doc = docs["fluent json 7"]
        assert parse_rfc3339(doc["timestamp"]) == T0 + 7_000_000 and doc["fields"] == {}
        _, doc = docs["fluent msgpack 42"]
        assert parse_rfc3339(doc["timestamp"]) == T0 + 42 and doc["fields"] == {"stream": "stdout"}
        _, doc = docs["vector 3"]
        assert (doc["source_type"], doc["fields"]) == ("file", {"host": "h1"})
        assert parse_rfc3339(doc["timestamp"]) == parse_rfc3339("2025-11-25T08:00:01.5Z")
        _, doc = docs["logstash line"]
        assert doc["fields"] == {"@version": "1"}
        topic, doc = docs["pino line"]
        assert (topic, doc["level"], doc["fields"]) == (
            topics["logs-high-priority"],
            "error",
            {"pid": 7, "hostname": "h2"},
        )
        assert parse_rfc3339(doc["timestamp"]) == T0 + 3_000_000

        # The bad ones, parked with their reason and what was sent; never replayed (no topic).
        entries = [
            orjson.loads(line)
            for seg in sorted((tmp_path / "dlq").glob("dlq_entry_*.json"))
            for line in seg.read_bytes().splitlines()
        ]
        assert len(entries) == 8
        assert {(e["failed_sink"], e["error_type"], e["topic"]) for e in entries} == {
            ("http_ingest", "invalid_record", "")
        }
        by_error = {e["error_message"]: e["original_entry"] for e in entries}
        assert by_error["record 11: 'message' is empty"] == {"message": ""}
        [not_json] = [v for k, v in by_error.items() if k.startswith("record 13: not JSON (")]
        assert not_json == {"raw": "{not json"}
        assert by_error[
            "record 14: no message: none of message, log, msg is there (http_ingest.message_key)"
        ] == {"text": "no message key"}
        assert by_error["record 15: must be an object, not a number"] == {"raw": 42}
        assert by_error["record 51: 'log' is empty"] == {"date": T0 / NS, "log": ""}
        assert by_error["record 4: 'log' is empty"] == {"log": "\n", "stream": "stdout"}
        stats = agent.get("/dlq/stats")
        assert stats["by_reason"] == {"invalid_record": 8} and stats["due_for_reprocessing"] == 0

        metrics = wait_until(
            lambda: (
                (m := agent.metrics())
                and 'source_lines_received_total{source="http_ingest",transport="http"} 520.0' in m
                and m
            ),
            30,
            "the ingest metrics",
        )
        for reason, n in [
            ("empty_message", 4),
            ("invalid_json", 1),
            ("missing_message", 1),
            ("not_an_object", 1),
            ("invalid_field", 1),
        ]:
            assert (
                f'http_ingest_records_rejected_total{{outcome="parked",reason="{reason}"}} {n}.0' in metrics
            )
        assert 'http_ingest_requests_total{code="200"} 7.0' in metrics
        assert agent.get("/stats")["http_ingest"] == {"accepted": good, "rejected": 8}
        warnings = [line for line in agent.log().splitlines() if "HTTP ingest rejected" in line]
        assert warnings and "e.g. record 11: 'message' is empty" in warnings[0], agent.log()
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
        # `dlq replay` leaves them (they name no topic); `dlq list` shows them.
        config = str(tmp_path / "config.yaml")
        assert "nothing to replay" in run_cli("dlq", "replay", "--config", config, "--no-progress").stdout
        listed = run_cli("dlq", "list", "--config", config, "--reason", "invalid_record", "--json").stdout
        errors = {orjson.loads(line)["error_message"] for line in listed.splitlines()}
        assert len(errors) == 8 and "record 11: 'message' is empty" in errors
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_empty_messages_can_be_skipped_and_a_missing_dlq_drops_bad_records_not_good_ones(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        http_ingest={"empty_messages": "skip"},
        dispatcher={"dlq_config": {"enabled": False}},
    )
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    try:
        body = b'{"log": "kept"}\n{"log": ""}\n{"nothing": 1}\n'
        status, answer = curl(agent, tmp_path, body, "application/x-ndjson")
        assert (status, answer["accepted"], answer["rejected"]) == (200, 1, 2), answer
        assert [(e["reason"], e["outcome"]) for e in answer["errors"]] == [
            ("empty_message", "skipped"),
            ("missing_message", "dropped"),
        ]
        assert "the local DLQ is disabled" in answer["dlq_error"]
        [record] = consume_all(bootstrap, topics.values(), expected=1, timeout=60)
        assert record.json()["message"] == "kept"
        metrics = agent.metrics()
        assert 'http_ingest_records_rejected_total{outcome="skipped",reason="empty_message"} 1.0' in metrics
        assert 'http_ingest_records_rejected_total{outcome="dropped",reason="missing_message"} 1.0' in metrics
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
