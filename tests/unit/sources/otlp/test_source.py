"""The OTLP listener's answers: ExportLogsServiceResponse, google.rpc.Status, the partial success text."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from log_capturer.app import Agent
from log_capturer.config.loader import validate
from log_capturer.sources.http.source import Rejected
from log_capturer.sources.otlp.decode import JSON, PROTOBUF
from log_capturer.sources.otlp.source import (
    DROPPED,
    PARKED,
    SKIPPED,
    _described,
    error_body,
    export_response,
    status_message,
)


@pytest.mark.parametrize("message", ["", "bad", "é" * 200, "x" * 70_000])
@pytest.mark.parametrize("code", [0, 3, 8, 14, 300])
def test_the_hand_written_status_is_what_protobuf_reads(code: int, message: str) -> None:
    status = Status.FromString(status_message(code, message))
    assert (status.code, status.message) == (code, message)


def test_answers_are_in_the_request_encoding() -> None:
    assert export_response(PROTOBUF) == b""
    assert (
        ExportLogsServiceResponse.FromString(export_response(PROTOBUF)).HasField("partial_success") is False
    )
    partial = ExportLogsServiceResponse.FromString(export_response(PROTOBUF, 2, "why"))
    assert (partial.partial_success.rejected_log_records, partial.partial_success.error_message) == (2, "why")
    assert export_response(JSON) == b"{}"
    assert orjson.loads(export_response(JSON, 2, "why")) == {
        "partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "why"}
    }
    assert Status.FromString(error_body(PROTOBUF, 429, "held")).code == 8  # RESOURCE_EXHAUSTED
    assert orjson.loads(error_body(JSON, 400, "unreadable")) == {"code": 3, "message": "unreadable"}
    assert orjson.loads(error_body(JSON, 503, "stopping"))["code"] == 14  # UNAVAILABLE


def test_the_partial_success_message_counts_reasons_and_outcomes() -> None:
    rejected = [Rejected(i, "empty_body", f"record {i}: no body", {}) for i in range(1, 8)]
    rejected.append(Rejected(9, "invalid_trace_id", "record 9: trace_id has 2 bytes, not 16", {}))
    outcomes = [(r, SKIPPED if r.reason == "empty_body" else PARKED) for r in rejected]
    text = _described(outcomes, "")
    assert text.startswith(
        "8 log records rejected (7 empty_body, 1 invalid_trace_id; 1 parked in the agent's DLQ, "
        "7 skipped (otlp.empty_bodies: skip)): record 1: no body; record 2: no body;"
    )
    assert text.endswith("record 5: no body (and 3 more)")
    dropped = _described([(rejected[-1], DROPPED)], "the DLQ is full")
    assert "1 dropped (the DLQ is full)" in dropped


def test_built_when_enabled_in_every_worker_or_in_worker_0_only(tmp_path: Path) -> None:
    base: dict[str, object] = {
        "sinks": {"kafka": {"enabled": True, "brokers": ["127.0.0.1:1"]}},
        "positions": {"directory": str(tmp_path / "positions")},
        "dispatcher": {"dlq_config": {"directory": str(tmp_path / "dlq")}},
    }
    off = Agent(validate(base))
    assert "otlp" not in [s.name for _k, s in off.sources]
    assert off.stats()["otlp"] == {"requests": 0, "accepted": 0, "rejected": 0}
    on = validate({**base, "otlp": {"enabled": True}})
    assert "otlp" in [s.name for _k, s in Agent(on).sources]
    assert "otlp" in [s.name for _k, s in Agent(on, worker=(0, 2)).sources]
    assert "otlp" in [s.name for _k, s in Agent(on, worker=(1, 2)).sources]
    first = validate({**base, "otlp": {"enabled": True, "every_worker": False}})
    assert "otlp" in [s.name for _k, s in Agent(first, worker=(0, 2)).sources]
    assert "otlp" not in [s.name for _k, s in Agent(first, worker=(1, 2)).sources]
