"""OTLP log requests (``ExportLogsServiceRequest``) into chunks, in protobuf or OTLP/JSON.

Each log record becomes one record of the agent::

    message    the body: its text, or any other value as JSON (a map, a list, a number...)
    level      severity_number by OpenTelemetry's ranges (1-4 trace, 5-8 debug, 9-12 info,
               13-16 warn, 17-20 error, 21-24 fatal); without one, severity_text (a level name)
    timestamp  time_unix_nano, else observed_time_unix_nano, else the time received
    labels     otlp.labels, then the resource attributes of resource_attributes_as_labels and the
               scope attributes of scope_attributes_as_labels (values that are not text as JSON)
    fields     trace_id, span_id (lowercase hex), trace_flags, severity_text, severity_number,
               event_name, attributes (the record's), resource (the other resource attributes),
               scope (name, version, the other scope attributes): each only when present

Records are grouped into one chunk per set of labels. A record that cannot be shipped is
:class:`Rejected` with its reason (the others are shipped): no body or an empty text body
(``empty_body``), a trace or span id of the wrong size or not hex (``invalid_trace_id``), a member
of the wrong type in OTLP/JSON (``invalid_field``). A body that cannot be read at all raises
:class:`OtlpError` (400).

OTLP/JSON is protobuf's JSON mapping with OTLP's exceptions: trace and span ids in hex, field
names in lowerCamelCase (the proto names are accepted too), 64-bit integers as strings or numbers,
enums as numbers (or their names). It is decoded with orjson, not protobuf's JSON parser, which
would read the ids as base64.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, cast

import orjson
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from log_capturer.processing.levels import level_of_value
from log_capturer.record import Chunk, Origin
from log_capturer.sources.http.source import Rejected
from log_capturer.sources.listener import Group, chunks_of
from log_capturer.sources.otlp.config import OtlpConfig

try:
    from log_capturer.sources.otlp import _walk
except ImportError:  # pragma: no cover - built by pip install; without a C compiler: the Python walk
    _walk = cast(Any, None)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
FORMATS = f"an OTLP ExportLogsServiceRequest as protobuf ({PROTOBUF}) or OTLP/JSON ({JSON})"

# Why a record was rejected (the ``reason`` label of otlp_records_rejected_total).
EMPTY_BODY = "empty_body"
INVALID_TRACE_ID = "invalid_trace_id"
INVALID_FIELD = "invalid_field"

MAX_ORIGINS = 1024
#: Every top-level member of a record's fields.
FIELD_MEMBERS = frozenset(
    (
        "resource",
        "scope",
        "trace_id",
        "span_id",
        "trace_flags",
        "severity_text",
        "severity_number",
        "event_name",
        "attributes",
    )
)

#: severity_number -> level: OpenTelemetry's ranges (0 is unspecified).
SEVERITY: tuple[str | None, ...] = (
    None,
    *(["trace"] * 4),
    *(["debug"] * 4),
    *(["info"] * 4),
    *(["warn"] * 4),
    *(["error"] * 4),
    *(["fatal"] * 4),
)
_SEVERITY_NAMES = {
    f"SEVERITY_NUMBER_{name}": i
    for i, name in enumerate(
        ["UNSPECIFIED"]
        + [
            f"{level}{n if n > 1 else ''}"
            for level in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
            for n in range(1, 5)
        ]
    )
}


class OtlpError(Exception):
    """The request cannot be read; ``status`` is the HTTP code, the message says why."""

    def __init__(self, status: int, reason: str, *, close: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        #: The connection cannot carry another request (its body could not be read).
        self.close = close


class _Invalid(Exception):
    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


def level_of(number: int, text: str) -> str | None:
    """The level of a severity: its number's range, else its text as a level name; None (the
    level is detected from the message) when neither says."""
    if 0 < number < len(SEVERITY):
        return SEVERITY[number]
    return level_of_value(text) or None if text else None


def hex_id(raw: bytes, size: int, what: str, n: int) -> str | None:
    """A protobuf trace (16 bytes) or span (8 bytes) id as hex; None when absent or all zeros."""
    if not raw:
        return None
    if len(raw) != size:
        raise _Invalid(INVALID_TRACE_ID, f"record {n}: {what} has {len(raw)} bytes, not {size}")
    return None if raw == bytes(size) else raw.hex()


def json_hex_id(value: Any, size: int, what: str, n: int) -> str | None:
    """An OTLP/JSON trace or span id (hex text of ``size`` bytes); None when absent or zeros."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) != 2 * size:
        raise _Invalid(INVALID_TRACE_ID, f"record {n}: {what} must be {2 * size} hex digits, not {value!r}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise _Invalid(INVALID_TRACE_ID, f"record {n}: {what} is not hex: {value!r}") from None
    return None if raw == bytes(size) else value.lower()


# -- protobuf values -----------------------------------------------------------------------------
def any_value(v: AnyValue) -> Any:
    """An AnyValue as a JSON value (bytes as base64)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    """Repeated KeyValue as a dict."""
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in kvs:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = v.string_value if kind == "string_value" else any_value(v)
    return out


# -- OTLP/JSON values ----------------------------------------------------------------------------
def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def json_any_value(v: Any, where: str) -> Any:
    """An OTLP/JSON AnyValue (``{"stringValue": ...}``...) as a JSON value."""
    if not isinstance(v, dict):
        raise _Invalid(INVALID_FIELD, f"{where} must be an AnyValue object, not {_kind(v)}")
    for key, value in v.items():
        if key in ("stringValue", "string_value", "boolValue", "bool_value"):
            return value
        if key in ("intValue", "int_value"):
            try:
                return int(value)
            except (TypeError, ValueError):
                raise _Invalid(INVALID_FIELD, f"{where}: intValue {value!r} is not an integer") from None
        if key in ("doubleValue", "double_value"):
            return float(value) if isinstance(value, int | float | str) else value
        if key in ("arrayValue", "array_value"):
            values = value.get("values", []) if isinstance(value, dict) else None
            if not isinstance(values, list):
                raise _Invalid(INVALID_FIELD, f'{where}: arrayValue must be {{"values": [...]}}')
            return [json_any_value(x, where) for x in values]
        if key in ("kvlistValue", "kvlist_value"):
            values = value.get("values", []) if isinstance(value, dict) else None
            if not isinstance(values, list):
                raise _Invalid(INVALID_FIELD, f'{where}: kvlistValue must be {{"values": [...]}}')
            return json_attributes(values, where)
        if key in ("bytesValue", "bytes_value"):
            return value
    return None


def json_attributes(kvs: Any, where: str) -> dict[str, Any]:
    if kvs is None:
        return {}
    if not isinstance(kvs, list):
        raise _Invalid(INVALID_FIELD, f"{where}: attributes must be a list, not {_kind(kvs)}")
    out: dict[str, Any] = {}
    for kv in kvs:
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise _Invalid(INVALID_FIELD, f'{where}: an attribute must be {{"key": ..., "value": ...}}')
        value = kv.get("value")
        out[kv["key"]] = None if value is None else json_any_value(value, f"{where}: attribute {kv['key']!r}")
    return out


def _json_int(obj: dict[str, Any], camel: str, snake: str, n: int) -> int:
    value = _get(obj, camel, snake)
    if value is None or value == "":
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _Invalid(INVALID_FIELD, f"record {n}: {camel} {value!r} is not an integer") from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


# -- building chunks -----------------------------------------------------------------------------
@dataclass
class _Scope:
    """What the records of one resource and scope share: their chunk, their common fields."""

    group: Group
    common: dict[str, Any]


class Decoder:
    """Turns request bodies into chunks (one per set of labels) and rejected records. Used from
    the executor's threads: the origin cache only ever gains valid entries."""

    def __init__(self, config: OtlpConfig) -> None:
        self.config = config
        self._resource_labels = tuple(config.resource_attributes_as_labels)
        self._scope_labels = tuple(config.scope_attributes_as_labels)
        self._origins: dict[tuple[tuple[str, str], ...], Origin] = {}

    def decode(self, body: bytes, mime: str) -> tuple[list[Chunk], list[Rejected]]:
        """The chunks and rejected records of a body of type ``mime`` (PROTOBUF or JSON)."""
        groups: dict[int, Group] = {}
        rejected: list[Rejected] = []
        if mime == PROTOBUF:
            if not self._walked(body, groups, rejected):
                groups.clear()
                rejected.clear()
                self._protobuf(body, groups, rejected)
        else:
            self._json(body, groups, rejected)
        return chunks_of(groups.values()), rejected

    def _scope(
        self,
        groups: dict[int, Group],
        resource: dict[str, Any],
        name: str,
        version: str,
        scope_attrs: dict[str, Any],
    ) -> _Scope:
        labels = dict(self.config.labels)
        for attrs, keys in ((resource, self._resource_labels), (scope_attrs, self._scope_labels)):
            for key in keys:
                if key in attrs:
                    value = attrs.pop(key)
                    labels[key] = value if isinstance(value, str) else orjson.dumps(value).decode()
        origin = self._origin(labels)
        group = groups.get(id(origin))
        if group is None:
            group = groups[id(origin)] = Group(origin)
        common: dict[str, Any] = {}
        if resource:
            common["resource"] = resource
        scope: dict[str, Any] = {}
        if name:
            scope["name"] = name
        if version:
            scope["version"] = version
        if scope_attrs:
            scope["attributes"] = scope_attrs
        if scope:
            common["scope"] = scope
        return _Scope(group, common)

    def _origin(self, labels: dict[str, str]) -> Origin:
        key = tuple(labels.items())
        origin = self._origins.get(key)
        if origin is None:
            cfg = self.config
            origin = Origin(cfg.source_type, cfg.source_id, labels, pipeline=cfg.pipeline)
            if len(self._origins) >= MAX_ORIGINS:
                self._origins.clear()
            self._origins[key] = origin
        return origin

    def _walked(self, body: bytes, groups: dict[int, Group], rejected: list[Rejected]) -> bool:
        """The records of a protobuf body, walked in C (``_walk.c``): what :meth:`_protobuf`
        gives, without protobuf's objects per record, each record's fields as the JSON the sinks
        write (the groups' ``members`` set: the chunks carry them as ``EncodedFields``). False
        when the C walk leaves the request to :meth:`_protobuf` (something it does not decide as
        protobuf would: malformed bytes, text that is not UTF-8, a message given twice...);
        ``groups`` and ``rejected`` are then to be cleared."""
        layout = _walk.scopes(body) if _walk is not None else None
        if layout is None:
            return False
        resources: dict[int, dict[str, Any]] = {}
        n = 0
        try:
            for ri, raw_resource, raw_scope, start, end in layout:
                resource_attrs = resources.get(ri)
                if resource_attrs is None:
                    resource_attrs = resources[ri] = attributes(Resource.FromString(raw_resource).attributes)
                sc = InstrumentationScope.FromString(raw_scope)
                scope = self._scope(
                    groups, dict(resource_attrs), sc.name, sc.version, attributes(sc.attributes)
                )
                # Each record's fields written as JSON by the walk (no dict), the scope's part
                # serialised once here; unless JSON would not give the dict back (a resource
                # attribute that is NaN or infinite): then dicts, as the Python walk makes them.
                encoded = orjson.dumps(scope.common)
                common_json = encoded if orjson.loads(encoded) == scope.common else None
                walked = _walk.records(body, start, end, scope.common, n, level_of, orjson.dumps, common_json)
                if walked is None:
                    return False
                lines, metas, levels, stamps, bad, count = walked
                n += count
                g = scope.group
                g.members = FIELD_MEMBERS
                g.lines.extend(lines)
                g.fields.extend(metas)
                g.levels.extend(levels)
                g.stamps.extend(stamps)
                for number, reason, text, rec_start, rec_end in bad:
                    rec = LogRecord.FromString(body[rec_start:rec_end])
                    rejected.append(Rejected(number, reason, text, _proto_original(rec, resource_attrs, sc)))
        except (DecodeError, ValueError):
            return False
        return True

    def _protobuf(self, body: bytes, groups: dict[int, Group], rejected: list[Rejected]) -> None:
        try:
            request = ExportLogsServiceRequest.FromString(body)
        except (DecodeError, ValueError) as exc:
            raise OtlpError(400, f"the body is not {FORMATS}: protobuf: {exc}") from None
        n = 0
        for rl in request.resource_logs:
            resource_attrs = attributes(rl.resource.attributes)
            for sl in rl.scope_logs:
                sc = sl.scope
                scope = self._scope(
                    groups, dict(resource_attrs), sc.name, sc.version, attributes(sc.attributes)
                )
                g, common = scope.group, scope.common
                lines, metas, levels, stamps = g.lines, g.fields, g.levels, g.stamps
                rec: LogRecord
                for rec in sl.log_records:
                    n += 1
                    try:
                        body_value = rec.body
                        kind = body_value.WhichOneof("value")
                        if kind == "string_value":
                            message = body_value.string_value
                        elif kind is None:
                            message = ""
                        else:
                            message = orjson.dumps(any_value(body_value)).decode()
                        if not message or message.isspace():
                            raise _Invalid(EMPTY_BODY, f"record {n}: no body (nothing to ship as message)")
                        fields = common.copy()
                        if (raw := rec.trace_id) and (tid := hex_id(raw, 16, "trace_id", n)):
                            fields["trace_id"] = tid
                        if (raw := rec.span_id) and (sid := hex_id(raw, 8, "span_id", n)):
                            fields["span_id"] = sid
                        if flags := rec.flags & 0xFF:
                            fields["trace_flags"] = flags
                        number, text = rec.severity_number, rec.severity_text
                        if text:
                            fields["severity_text"] = text
                        if number:
                            fields["severity_number"] = number
                        if event := rec.event_name:
                            fields["event_name"] = event
                        if kvs := rec.attributes:
                            fields["attributes"] = attributes(kvs)
                    except _Invalid as exc:
                        rejected.append(
                            Rejected(n, exc.reason, exc.text, _proto_original(rec, resource_attrs, sc))
                        )
                        continue
                    lines.append(message)
                    metas.append(fields or None)
                    levels.append(SEVERITY[number] if 0 < number < 25 else level_of(number, text))
                    stamps.append(rec.time_unix_nano or rec.observed_time_unix_nano or None)

    def _json(self, body: bytes, groups: dict[int, Group], rejected: list[Rejected]) -> None:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise OtlpError(400, f"the body is not {FORMATS}: JSON: {exc}") from None
        if not isinstance(request, dict):
            raise OtlpError(400, f"the body is not {FORMATS}: the JSON is {_kind(request)}, not an object")
        resource_logs = _get(request, "resourceLogs", "resource_logs") or []
        n = 0
        try:
            if not isinstance(resource_logs, list):
                raise _Invalid(INVALID_FIELD, "resourceLogs must be a list")
            for rl in resource_logs:
                if not isinstance(rl, dict):
                    raise _Invalid(INVALID_FIELD, "an entry of resourceLogs must be an object")
                resource = rl.get("resource") or {}
                if not isinstance(resource, dict):
                    raise _Invalid(INVALID_FIELD, "resource must be an object")
                resource_attrs = json_attributes(resource.get("attributes"), "resource")
                scope_logs = _get(rl, "scopeLogs", "scope_logs") or []
                if not isinstance(scope_logs, list):
                    raise _Invalid(INVALID_FIELD, "scopeLogs must be a list")
                for sl in scope_logs:
                    if not isinstance(sl, dict):
                        raise _Invalid(INVALID_FIELD, "an entry of scopeLogs must be an object")
                    sc = sl.get("scope") or {}
                    if not isinstance(sc, dict):
                        raise _Invalid(INVALID_FIELD, "scope must be an object")
                    scope = self._scope(
                        groups,
                        dict(resource_attrs),
                        str(sc.get("name") or ""),
                        str(sc.get("version") or ""),
                        json_attributes(sc.get("attributes"), "scope"),
                    )
                    records = _get(sl, "logRecords", "log_records") or []
                    if not isinstance(records, list):
                        raise _Invalid(INVALID_FIELD, "logRecords must be a list")
                    n = self._json_records(records, scope, resource_attrs, sc, rejected, n)
        except _Invalid as exc:
            raise OtlpError(400, f"the body is not {FORMATS}: {exc.text}") from None

    def _json_records(
        self,
        records: list[Any],
        scope: _Scope,
        resource_attrs: dict[str, Any],
        sc: dict[str, Any],
        rejected: list[Rejected],
        n: int,
    ) -> int:
        """Adds ``records`` to the scope's chunk (those that cannot be shipped to ``rejected``);
        ``n`` is the number of the request's records before them; returns it after them."""
        g, common = scope.group, scope.common
        for rec in records:
            n += 1
            try:
                if not isinstance(rec, dict):
                    raise _Invalid(INVALID_FIELD, f"record {n}: must be an object, not {_kind(rec)}")
                body_value = rec.get("body")
                message = ""
                if body_value is not None:
                    value = json_any_value(body_value, f"record {n}: body")
                    message = (
                        value
                        if isinstance(value, str)
                        else ""
                        if value is None
                        else orjson.dumps(value).decode()
                    )
                if not message.strip():
                    raise _Invalid(EMPTY_BODY, f"record {n}: no body (nothing to ship as message)")
                fields = dict(common)
                if tid := json_hex_id(_get(rec, "traceId", "trace_id"), 16, "traceId", n):
                    fields["trace_id"] = tid
                if sid := json_hex_id(_get(rec, "spanId", "span_id"), 8, "spanId", n):
                    fields["span_id"] = sid
                if flags := _json_int(rec, "flags", "flags", n) & 0xFF:
                    fields["trace_flags"] = flags
                number = _get(rec, "severityNumber", "severity_number") or 0
                if isinstance(number, str):
                    number = _SEVERITY_NAMES.get(number, 0) if not number.isdigit() else int(number)
                if not isinstance(number, int) or isinstance(number, bool):
                    raise _Invalid(INVALID_FIELD, f"record {n}: severityNumber {number!r} is not a number")
                text = _get(rec, "severityText", "severity_text") or ""
                if not isinstance(text, str):
                    raise _Invalid(INVALID_FIELD, f"record {n}: severityText must be a string")
                if text:
                    fields["severity_text"] = text
                if number:
                    fields["severity_number"] = number
                if event := _get(rec, "eventName", "event_name"):
                    fields["event_name"] = event
                attrs = json_attributes(rec.get("attributes"), f"record {n}")
                if attrs:
                    fields["attributes"] = attrs
                stamp = _json_int(rec, "timeUnixNano", "time_unix_nano", n) or _json_int(
                    rec, "observedTimeUnixNano", "observed_time_unix_nano", n
                )
            except _Invalid as exc:
                original = {"resource": resource_attrs, "scope": sc, "log_record": rec}
                rejected.append(Rejected(n, exc.reason, exc.text, original))
                continue
            g.lines.append(message)
            g.fields.append(fields or None)
            g.levels.append(level_of(number, text))
            g.stamps.append(stamp or None)
        return n


def _proto_original(rec: LogRecord, resource: dict[str, Any], scope: Any) -> dict[str, Any]:
    """A rejected protobuf record as JSON, for its DLQ entry (ids in hex, as OTLP/JSON has them)."""
    doc = MessageToDict(rec, preserving_proto_field_name=True)
    if rec.trace_id:
        doc["trace_id"] = rec.trace_id.hex()
    if rec.span_id:
        doc["span_id"] = rec.span_id.hex()
    return {
        "resource": resource,
        "scope": MessageToDict(scope, preserving_proto_field_name=True),
        "log_record": doc,
    }
