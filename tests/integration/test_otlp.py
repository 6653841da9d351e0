"""OTLP/HTTP logs into a real agent process, from the OpenTelemetry SDK's exporter and curl, read
back from a real Kafka broker: levels, trace ids, attributes, partial success, backpressure."""

from __future__ import annotations

import gzip
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from log_capturer.devtools.kafka_local import free_port
from log_capturer.processing.timestamps import parse_rfc3339
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331
T0 = 1_764_057_600_000_000_000  # 2025-11-25T08:00:00Z
#: OpenTelemetry's SeverityNumber values (the SDK's enum) and the level each becomes.
SEVERITIES = [(1, "trace"), (5, "debug"), (9, "info"), (13, "warn"), (17, "error"), (21, "fatal")]


def otlp_agent(tmp: Path, bootstrap: str, topics: dict[str, str], **otlp: Any) -> tuple[AgentProcess, str]:
    """An agent with the OTLP input on a free port, and its base URL."""
    port = free_port()
    cfg = agent_config(
        tmp,
        bootstrap,
        topics,
        otlp={
            "enabled": True,
            "port": port,
            "resource_attributes_as_labels": ["service.name", "tenant_id"],
            **otlp,
        },
    )
    agent = AgentProcess(write_config(tmp / "config.yaml", cfg), tmp / "agent.log")
    return agent.start(), f"http://127.0.0.1:{port}"


def dlq_entries(tmp: Path) -> list[dict[str, Any]]:
    return [
        orjson.loads(line)
        for seg in sorted((tmp / "dlq").glob("dlq_entry_*.json"))
        for line in seg.read_bytes().splitlines()
    ]


def test_the_sdk_exporter_delivers_every_record_with_level_trace_ids_and_attributes(
    tmp_path: Path, bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    agent, url = otlp_agent(tmp_path, bootstrap, topics)
    try:
        # The SDK configured as users do: the base URL in the environment (it appends /v1/logs).
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip")
        provider = LoggerProvider(
            resource=Resource.create({"service.name": "checkout", "tenant_id": "acme", "host.name": "h1"})
        )
        provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(), schedule_delay_millis=60_000)
        )
        logger = provider.get_logger("app.payments", "1.2.3")
        span = SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        ctx = trace.set_span_in_context(NonRecordingSpan(span))
        from opentelemetry._logs import SeverityNumber

        n = 300
        for i in range(n):
            number, _ = SEVERITIES[i % len(SEVERITIES)]
            logger.emit(
                timestamp=T0 + i,
                context=ctx,
                severity_number=SeverityNumber(number),
                severity_text=SeverityNumber(number).name,
                body=f"sdk record {i}",
                attributes={"order.id": i, "retry": i % 2 == 0},
            )
            if i == 100:
                logger.emit(body="", severity_number=SeverityNumber.INFO)  # nothing to ship: rejected
        logger.emit(body={"event": "checkout", "items": [1, 2]}, severity_number=SeverityNumber.INFO)
        assert provider.force_flush(30_000)
        # Answered only once Kafka acknowledged: every record is there already, without waiting.
        records = consume_all(bootstrap, topics.values())
        assert len(records) == n + 1, agent.log()
        docs = {r.json()["message"]: r.json() for r in records}
        for i in (0, 1, 2, 3, 4, 5, 299):
            doc = docs[f"sdk record {i}"]
            number, level = SEVERITIES[i % len(SEVERITIES)]
            assert doc["level"] == level
            assert parse_rfc3339(doc["timestamp"]) == T0 + i
            assert (doc["source_type"], doc["source_id"]) == ("otlp", "otlp")
            assert doc["labels"] == {"service.name": "checkout", "tenant_id": "acme"}
            fields = doc["fields"]
            assert fields["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
            assert fields["span_id"] == "b7ad6b7169203331"
            assert fields["trace_flags"] == 1
            assert fields["attributes"] == {"order.id": i, "retry": i % 2 == 0}
            assert fields["resource"]["host.name"] == "h1" and "service.name" not in fields["resource"]
            assert fields["scope"] == {"name": "app.payments", "version": "1.2.3"}
            assert fields["severity_number"] == number
        assert docs['{"event":"checkout","items":[1,2]}']["level"] == "info"
        # The empty record: parked with its reason, the others shipped.
        [entry] = dlq_entries(tmp_path)
        assert (entry["failed_sink"], entry["error_type"]) == ("otlp", "invalid_record")
        assert entry["error_message"] == "record 102: no body (nothing to ship as message)"
        assert entry["original_entry"]["resource"]["service.name"] == "checkout"
        metrics = agent.metrics()
        assert 'otlp_records_rejected_total{outcome="parked",reason="empty_body"} 1.0' in metrics
        assert 'otlp_requests_total{code="200"} 1.0' in metrics
        assert agent.get("/stats")["otlp"] == {"requests": 1, "accepted": n + 1, "rejected": 1}
        provider.shutdown()
        assert "Traceback" not in agent.log()
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def curl(
    url: str, tmp: Path, body: bytes, content_type: str, gzipped: bool = False
) -> tuple[int, bytes, str]:
    """POST ``body`` with curl (a real client): status, answer, its Content-Type."""
    path = tmp / f"body-{time.monotonic_ns()}"
    path.write_bytes(gzip.compress(body) if gzipped else body)
    cmd = [
        "curl",
        "-sS",
        "--max-time",
        "60",
        "-w",
        "\n%{http_code} %{content_type}",
        "-H",
        f"Content-Type: {content_type}",
    ]
    if gzipped:
        cmd += ["-H", "Content-Encoding: gzip"]
    cmd += ["--data-binary", f"@{path}", url + "/v1/logs"]
    done = subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    assert done.returncode == 0, f"curl failed: {done.stderr.decode()}"
    text, _, tail = done.stdout.rpartition(b"\n")
    code, _, ctype = tail.decode().partition(" ")
    return int(code), text, ctype


def json_request(records: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
                    "scopeLogs": [{"scope": {"name": "web"}, "logRecords": records}],
                }
            ]
        }
    )


def test_otlp_json_and_protobuf_partial_success_and_unreadable_bodies(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    agent, url = otlp_agent(tmp_path, bootstrap, topics)
    try:
        records = [
            {
                "timeUnixNano": str(T0 + i),
                "severityNumber": 17,
                "traceId": "5b8efff798038103d269b633813fc60c",
                "spanId": "eee19b7ec3c1b174",
                "body": {"stringValue": f"json record {i}"},
                "attributes": [{"key": "http.status_code", "value": {"intValue": "500"}}],
            }
            for i in range(50)
        ]
        records.insert(7, {"body": {"stringValue": "bad trace id"}, "traceId": "not-hex"})
        status, text, ctype = curl(url, tmp_path, json_request(records), "application/json", gzipped=True)
        assert (status, ctype) == (200, "application/json"), text
        answer = orjson.loads(text)
        assert answer["partialSuccess"]["rejectedLogRecords"] == "1"
        assert "1 invalid_trace_id" in answer["partialSuccess"]["errorMessage"]
        assert "record 8: traceId must be 32 hex digits" in answer["partialSuccess"]["errorMessage"]
        status, text, _ = curl(url, tmp_path, json_request(records[:2]), "application/json")
        assert (status, orjson.loads(text)) == (200, {})

        # Protobuf, the answer decoded as the exporters do.
        req = ExportLogsServiceRequest()
        sl = req.resource_logs.add().scope_logs.add()
        sl.log_records.add().body.string_value = "proto record"
        sl.log_records.add()  # no body
        status, text, ctype = curl(url, tmp_path, req.SerializeToString(), "application/x-protobuf")
        assert (status, ctype) == (200, "application/x-protobuf")
        response = ExportLogsServiceResponse.FromString(text)
        assert response.partial_success.rejected_log_records == 1
        assert "empty_body" in response.partial_success.error_message

        # Bodies that cannot be read: 400 (415 for another type), a Status in the request's encoding.
        status, text, ctype = curl(url, tmp_path, b"{nope", "application/json")
        assert (
            status == 400 and orjson.loads(text)["code"] == 3 and "OTLP/JSON" in orjson.loads(text)["message"]
        )
        status, text, ctype = curl(url, tmp_path, b"\xff\xff\xff", "application/x-protobuf")
        assert (status, ctype) == (400, "application/x-protobuf") and b"protobuf" in text
        status, text, _ = curl(url, tmp_path, b"x", "text/plain")
        assert status == 415 and "application/x-protobuf" in orjson.loads(text)["message"]
        status, text, _ = post(
            url, b"not gzip", {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )
        assert status == 400 and "cannot be read (Content-Encoding: gzip)" in orjson.loads(text)["message"]

        got = consume_all(bootstrap, topics.values(), expected=53, timeout=30)
        docs = {r.json()["message"]: r.json() for r in got}
        assert len(got) == 53, agent.log()
        doc = docs["json record 3"]
        assert (doc["level"], doc["labels"]) == ("error", {"service.name": "web"})
        assert doc["fields"]["trace_id"] == "5b8efff798038103d269b633813fc60c"
        assert doc["fields"]["attributes"] == {"http.status_code": 500}
        assert parse_rfc3339(doc["timestamp"]) == T0 + 3
        assert docs["proto record"]["level"] == ""
        reasons = sorted(e["error_message"] for e in dlq_entries(tmp_path))
        assert reasons == [
            "record 2: no body (nothing to ship as message)",
            "record 8: traceId must be 32 hex digits, not 'not-hex'",
        ]
        warnings = [line for line in agent.log().splitlines() if "OTLP: rejected" in line]
        assert warnings, agent.log()
        assert "Traceback" not in agent.log()
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(
        url + "/v1/logs",
        data=body,
        method="POST",
        headers=headers or {"Content-Type": "application/x-protobuf"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_unacknowledged_records_get_503_and_a_held_agent_429_with_retry_after(tmp_path: Path) -> None:
    """A stalled sink (its broker address answers nothing) fills a tiny dispatcher queue: never a
    200 before the sink acknowledged."""
    topics = {
        t: t for t in ("logs", "logs-high-priority", "logs-normal-priority", "logs-low-priority", "logs-dlq")
    }
    dead = f"127.0.0.1:{free_port()}"
    port = free_port()
    cfg = agent_config(
        tmp_path,
        dead,
        topics,
        dispatcher={"queue_size": 10, "worker_count": 1, "drain_timeout": "2s"},
        sinks={"kafka": {"queue_size": 1}},
        otlp={"enabled": True, "port": port, "queue_timeout": "200ms", "ack_timeout": "1s"},
    )
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        req = ExportLogsServiceRequest()
        sl = req.resource_logs.add().scope_logs.add()
        for i in range(5):
            sl.log_records.add().body.string_value = f"line {i}"
        body = req.SerializeToString()
        status, text, headers = post(url, body)
        assert status == 503 and headers["Retry-After"] == "5", text
        assert b"not acknowledged" in text
        seen: list[int] = []
        for _ in range(20):  # bounded: the queue holds 10 lines, each request brings 5
            status, text, headers = post(url, body)
            seen.append(status)
            if status == 429:
                break
        assert seen[-1] == 429, seen
        assert headers["Retry-After"] == "1" and headers["Content-Type"] == "application/x-protobuf"
        assert b"held back" in text
        assert set(seen[:-1]) <= {503}
        wait_until(lambda: 'otlp_requests_total{code="429"} 1.0' in agent.metrics(), 10, "the 429 metric")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_a_taken_port_is_a_clear_start_error(tmp_path: Path) -> None:
    topics = {
        t: t for t in ("logs", "logs-high-priority", "logs-normal-priority", "logs-low-priority", "logs-dlq")
    }
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = agent_config(tmp_path, f"127.0.0.1:{free_port()}", topics, otlp={"enabled": True, "port": port})
        agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log")
        agent.start(wait=False)
        assert agent.proc is not None
        assert agent.proc.wait(60) == 2
        log = agent.log()
        assert f"cannot listen for OTLP on 127.0.0.1:{port}" in log and "change otlp.port" in log, log
        assert "Traceback" not in log


def test_a_reload_rebinds_the_listener_with_the_new_section(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    port = free_port()
    cfg = agent_config(
        tmp_path, bootstrap, topics, otlp={"enabled": True, "port": port, "labels": {"env": "a"}}
    )
    config = write_config(tmp_path / "config.yaml", cfg)
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        for step, env in enumerate(("a", "b")):
            if env == "b":
                cfg["otlp"]["labels"] = {"env": "b"}
                write_config(config, cfg)
                req = urllib.request.Request(agent.api + "/config/reload", data=b"", method="POST")
                with urllib.request.urlopen(req, timeout=120) as r:
                    assert r.status == 200, r.read()
            body = json_request([{"body": {"stringValue": f"before and after {step}"}}])
            status, text, _ = post(url, body, {"Content-Type": "application/json"})
            assert (status, orjson.loads(text)) == (200, {}), agent.log()
        got = consume_all(bootstrap, topics.values())
        assert sorted((r.json()["message"], r.json()["labels"]["env"]) for r in got) == [
            ("before and after 0", "a"),
            ("before and after 1", "b"),
        ]
        assert "Traceback" not in agent.log()
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
