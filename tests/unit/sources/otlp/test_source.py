"""The OTLP listener's answers: ExportLogsServiceResponse, google.rpc.Status, the partial success text."""

from __future__ import annotations

import orjson
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

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
