"""Forward and OTLP in every worker of a two-worker agent, on one shared port each (SO_REUSEPORT),
against the real broker: the kernel spreads the clients' connections over both workers, each
answers what it received once Kafka acknowledged it, and every record arrives once."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from log_capturer.devtools.kafka_local import free_port
from tests.integration.test_forward_to_kafka import ForwardClient, entries
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

#: Connections per input, each opened anew: with two workers, the chance that the kernel gives all
#: of them to one worker is 2 x 2^-24.
CONNECTIONS = 24
PER_CONNECTION = 200


def otlp_body(conn: int) -> bytes:
    sl = ScopeLogs(
        log_records=[
            LogRecord(body=AnyValue(string_value=f"otlp {conn} {i}"), severity_number=9)
            for i in range(PER_CONNECTION)
        ]
    )
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[sl])]).SerializeToString()


def post_otlp(port: int, body: bytes) -> int:
    """One request on a connection of its own (urllib closes it after the answer)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/logs",
        data=body,
        headers={"Content-Type": "application/x-protobuf", "Connection": "close"},
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        return int(r.status)


def test_forward_and_otlp_listen_in_both_workers_and_every_record_arrives_once(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    fwd_port, otlp_port = free_port(), free_port()
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        app={"workers": 2},
        forward={"enabled": True, "host": "127.0.0.1", "port": fwd_port},
        otlp={"enabled": True, "port": otlp_port},
    )
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    try:
        for conn in range(CONNECTIONS):
            assert post_otlp(otlp_port, otlp_body(conn)) == 200
            client = ForwardClient(fwd_port)
            try:
                chunk = f"c{conn}"
                client.send("app", entries(f"forward {conn}", PER_CONNECTION), {"chunk": chunk})
                # Acknowledged once Kafka took the records (at-least-once for the client).
                assert client.read(60) == {"ack": chunk}
            finally:
                client.close()
        expected = 2 * CONNECTIONS * PER_CONNECTION
        records = consume_all(bootstrap, topics.values(), expected=expected, timeout=120)
        stats: dict[str, Any] = wait_until(
            lambda: (s := agent.get("/stats"))["otlp"]["accepted"] == CONNECTIONS * PER_CONNECTION and s,
            30,
            "the OTLP counts of both workers",
        )
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    messages = [r.json()["message"] for r in records]
    assert len(messages) == expected == len(set(messages)), agent.log()
    assert {f"otlp {c} {i}" for c in range(CONNECTIONS) for i in range(PER_CONNECTION)} <= set(messages)
    assert {f"forward {c} {i}" for c in range(CONNECTIONS) for i in range(PER_CONNECTION)} <= set(messages)
    # Both workers received requests and forward messages on the shared ports.
    per_worker = [w["stats"] for w in stats["workers"]]
    assert all(w["otlp"]["requests"] > 0 for w in per_worker), [w["otlp"] for w in per_worker]
    assert sum(w["otlp"]["requests"] for w in per_worker) == CONNECTIONS
    forward = [w["forward"] for w in per_worker]
    assert all(f["acks"] > 0 for f in forward), forward
    assert sum(f["acks"] for f in forward) == CONNECTIONS
    assert sum(f["received"] for f in forward) == CONNECTIONS * PER_CONNECTION
