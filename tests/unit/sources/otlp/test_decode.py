"""OTLP requests (protobuf and OTLP/JSON) into chunks: message, level, time, labels, fields, rejects."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber

from log_capturer.sources.otlp.config import OtlpConfig
from log_capturer.sources.otlp.decode import JSON, PROTOBUF, Decoder, OtlpError, level_of

TRACE = bytes(range(1, 17))
SPAN = bytes(range(1, 9))
T0 = 1_764_057_600_123_456_789


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=av(value))


def av(value: Any) -> AnyValue:
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[av(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[kv(k, v) for k, v in value.items()]))
    return AnyValue(string_value=value)


def request(*records: LogRecord, resource: dict[str, Any] | None = None) -> bytes:
    rl = ResourceLogs()
    for k, v in (resource or {"service.name": "checkout", "host.name": "h1"}).items():
        rl.resource.attributes.append(kv(k, v))
    sl = ScopeLogs()
    sl.scope.name = "app.payments"
    sl.scope.version = "1.2.3"
    sl.scope.attributes.append(kv("team", "pay"))
    sl.log_records.extend(records)
    rl.scope_logs.append(sl)
    return ExportLogsServiceRequest(resource_logs=[rl]).SerializeToString()


def decoder(**cfg: Any) -> Decoder:
    return Decoder(OtlpConfig.model_validate({"enabled": True, **cfg}))


@pytest.mark.parametrize(
    ("number", "text", "level"),
    [
        (1, "", "trace"),
        (4, "", "trace"),
        (5, "", "debug"),
        (9, "WARN", "info"),  # the number wins
        (12, "", "info"),
        (13, "", "warn"),
        (17, "", "error"),
        (20, "", "error"),
        (21, "", "fatal"),
        (24, "", "fatal"),
        (0, "Warning", "warn"),
        (0, "ERROR", "error"),
        (0, "", None),
        (0, "chatty", None),
        (99, "info", "info"),
    ],
)
def test_severity_ranges_become_levels(number: int, text: str, level: str | None) -> None:
    assert level_of(number, text) == level


def test_a_protobuf_record_becomes_a_record_with_labels_fields_level_and_time() -> None:
    rec = LogRecord(
        time_unix_nano=T0,
        observed_time_unix_nano=T0 + 5,
        severity_number=SeverityNumber.SEVERITY_NUMBER_ERROR,
        severity_text="ERROR",
        body=av("card declined"),
        attributes=[kv("order.id", 42), kv("retry", True)],
        trace_id=TRACE,
        span_id=SPAN,
        flags=1,
    )
    [chunk], rejected = decoder(labels={"env": "prod"}).decode(request(rec), PROTOBUF)
    assert rejected == []
    assert chunk.lines == ["card declined"]
    assert chunk.origin.source_type == "otlp" and chunk.origin.source_id == "otlp"
    assert chunk.origin.labels == {"env": "prod", "service.name": "checkout"}
    assert chunk.preset_levels == ["error"]
    assert chunk.timestamps == [T0]
    assert chunk.meta == [
        {
            "resource": {"host.name": "h1"},
            "scope": {"name": "app.payments", "version": "1.2.3", "attributes": {"team": "pay"}},
            "trace_id": TRACE.hex(),
            "span_id": SPAN.hex(),
            "trace_flags": 1,
            "severity_text": "ERROR",
            "severity_number": 17,
            "attributes": {"order.id": 42, "retry": True},
        }
    ]


def test_bodies_that_are_not_text_are_json_and_observed_time_is_the_fallback() -> None:
    records = [
        LogRecord(observed_time_unix_nano=T0, body=av({"user": "ann", "ids": [1, 2.5, b"\x00\xff"]})),
        LogRecord(body=av(7)),
    ]
    [chunk], _ = decoder().decode(request(*records), PROTOBUF)
    assert [orjson.loads(line) for line in chunk.lines] == [{"user": "ann", "ids": [1, 2.5, "AP8="]}, 7]
    assert chunk.preset_levels is None
    assert chunk.timestamps is not None and chunk.timestamps[0] == T0
    assert chunk.timestamps[1] == chunk.read_time_ns


def test_bad_records_are_rejected_one_by_one_with_their_reason() -> None:
    records = [
        LogRecord(body=av("good 1")),
        LogRecord(),  # no body
        LogRecord(body=av("   ")),
        LogRecord(body=av("short trace id"), trace_id=b"\x01\x02"),
        LogRecord(body=av("good 2"), trace_id=bytes(16), span_id=bytes(8)),  # zeros: no ids
    ]
    [chunk], rejected = decoder().decode(request(*records), PROTOBUF)
    assert chunk.lines == ["good 1", "good 2"]
    assert chunk.meta is not None and "trace_id" not in (chunk.meta[1] or {})
    assert [(r.number, r.reason) for r in rejected] == [
        (2, "empty_body"),
        (3, "empty_body"),
        (4, "invalid_trace_id"),
    ]
    assert rejected[2].error == "record 4: trace_id has 2 bytes, not 16"
    original = rejected[2].original
    assert original["log_record"]["trace_id"] == "0102"
    assert original["resource"] == {"service.name": "checkout", "host.name": "h1"}
    assert original["scope"]["name"] == "app.payments"


def test_resources_with_other_labels_get_chunks_of_their_own() -> None:
    body = ExportLogsServiceRequest(
        resource_logs=[
            ExportLogsServiceRequest.FromString(
                request(LogRecord(body=av(f"from {name}")), resource=res)
            ).resource_logs[0]
            for name, res in [
                ("a", {"service.name": "a", "k8s.namespace.name": "ns"}),
                ("b", {"service.name": "b", "k8s.namespace.name": "ns"}),
                ("a again", {"service.name": "a", "k8s.namespace.name": "ns"}),
            ]
        ]
    ).SerializeToString()
    d = decoder(
        resource_attributes_as_labels=["service.name", "k8s.namespace.name"],
        scope_attributes_as_labels=["team"],
    )
    chunks, _ = d.decode(body, PROTOBUF)
    assert [(c.origin.labels["service.name"], c.lines) for c in chunks] == [
        ("a", ["from a", "from a again"]),
        ("b", ["from b"]),
    ]
    assert chunks[0].origin.labels == {"service.name": "a", "k8s.namespace.name": "ns", "team": "pay"}
    assert chunks[0].meta is not None and chunks[0].meta[0] == {
        "scope": {"name": "app.payments", "version": "1.2.3"}
    }


def test_unreadable_bodies_raise_400() -> None:
    with pytest.raises(OtlpError) as exc:
        decoder().decode(b"\xff\xff\xff", PROTOBUF)
    assert exc.value.status == 400 and "protobuf" in exc.value.reason
    for body in (b"{not json", b"[1, 2]", b'{"resourceLogs": 5}'):
        with pytest.raises(OtlpError) as exc:
            decoder().decode(body, JSON)
        assert exc.value.status == 400 and "OTLP/JSON" in exc.value.reason


def otlp_json(*records: Any) -> bytes:
    return orjson.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {
                        "attributes": [
                            {"key": "service.name", "value": {"stringValue": "web"}},
                            {"key": "pid", "value": {"intValue": "4242"}},
                        ]
                    },
                    "scopeLogs": [{"scope": {"name": "web.http"}, "logRecords": list(records)}],
                }
            ]
        }
    )


def test_otlp_json_hex_ids_camel_case_and_int_strings() -> None:
    body = otlp_json(
        {
            "timeUnixNano": str(T0),
            "severityNumber": 13,
            "severityText": "WARN",
            "traceId": TRACE.hex().upper(),
            "spanId": SPAN.hex(),
            "body": {"stringValue": "slow request"},
            "attributes": [
                {"key": "http.status", "value": {"intValue": "504"}},
                {"key": "ratio", "value": {"doubleValue": 0.5}},
                {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}},
                {
                    "key": "m",
                    "value": {"kvlistValue": {"values": [{"key": "x", "value": {"boolValue": True}}]}},
                },
            ],
        },
        {
            "time_unix_nano": T0 + 1,
            "severity_number": "SEVERITY_NUMBER_DEBUG2",
            "body": {"kvlistValue": {"values": [{"key": "a", "value": {"intValue": 1}}]}},
        },
        {"observedTimeUnixNano": str(T0 + 2), "body": {"stringValue": "bad id"}, "traceId": "xyz"},
        {"body": {"stringValue": ""}},
        {"body": {"stringValue": "bad time"}, "timeUnixNano": "yesterday"},
        "not a record",
    )
    [chunk], rejected = decoder().decode(body, JSON)
    assert chunk.lines == ["slow request", '{"a":1}']
    assert chunk.preset_levels == ["warn", "debug"]
    assert chunk.timestamps == [T0, T0 + 1]
    assert chunk.origin.labels == {"service.name": "web"}
    assert chunk.meta is not None
    assert chunk.meta[0] == {
        "resource": {"pid": 4242},
        "scope": {"name": "web.http"},
        "trace_id": TRACE.hex(),
        "span_id": SPAN.hex(),
        "severity_text": "WARN",
        "severity_number": 13,
        "attributes": {"http.status": 504, "ratio": 0.5, "tags": ["a"], "m": {"x": True}},
    }
    assert [(r.number, r.reason) for r in rejected] == [
        (3, "invalid_trace_id"),
        (4, "empty_body"),
        (5, "invalid_field"),
        (6, "invalid_field"),
    ]
    assert rejected[0].original["log_record"]["traceId"] == "xyz"
    assert rejected[0].original["resource"] == {"service.name": "web", "pid": 4242}
    assert rejected[2].error == "record 5: timeUnixNano 'yesterday' is not an integer"
