"""The ``http_ingest`` section: records posted to the API server."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from log_capturer.config.base import Duration, Strict

#: The members of an HTTP ingest record that are the agent's own (never message, time or level).
HTTP_RECORD_MEMBERS = ("source_type", "source_id", "labels", "fields")


def _key_list(value: Any) -> Any:
    """One key, or a list of keys tried in order."""
    return [value] if isinstance(value, str) else value


KeyList = Annotated[
    list[Annotated[str, Field(min_length=1)]], BeforeValidator(_key_list), Field(min_length=1)
]


def check_record_keys(config: Strict) -> None:
    """Raises ValueError, naming the key to change, when a key of ``message_key``,
    ``timestamp_key`` or ``level_key`` is a record member of the agent's own or is in two of them
    (``http_ingest`` and ``forward`` records)."""
    taken: dict[str, str] = {k: "a record member of its own" for k in HTTP_RECORD_MEMBERS}
    for name in ("message_key", "timestamp_key", "level_key"):
        for key in getattr(config, name):
            if key in taken:
                raise ValueError(f"{name}: {key!r} is already {taken[key]}; choose another key")
            taken[key] = f"in {name}"


class HttpIngestConfig(Strict):
    enabled: bool = Field(
        True,
        description="Accept records on POST /api/v1/logs of the API server (server.port): JSON (one "
        "object or an array of objects), NDJSON or msgpack (a stream of maps, or Fluent Bit's "
        "[time, record] events), chosen by Content-Type, gzip bodies too. Each record is "
        "{message, level, source_type, source_id, labels, timestamp, fields}; see message_key, "
        "timestamp_key and level_key for the shapes of other clients.",
    )
    message_key: KeyList = Field(
        default_factory=lambda: ["message", "log", "msg"],
        description="Record member(s) holding the message, tried in order (a key or a list): "
        "'message' (Vector, Logstash), 'log' (Fluent Bit, Docker), 'msg' (Bunyan, Pino). One trailing "
        "newline is removed. A record with none of them is rejected (to the DLQ, see the README).",
    )
    timestamp_key: KeyList = Field(
        default_factory=lambda: ["timestamp", "@timestamp", "date", "time"],
        description="Record member(s) holding the event time, tried in order: RFC 3339 text, or a "
        "number of seconds since the epoch (fractions kept; Fluent Bit's 'date'), of milliseconds, "
        "microseconds or nanoseconds (told apart by size). The first that parses is the record "
        "timestamp; one that does not stays in fields. Else a msgpack event's own time, else the "
        "time received.",
    )
    level_key: KeyList = Field(
        default_factory=lambda: ["level", "severity"],
        description="Record member(s) holding the level, tried in order: a name (WARNING -> warn), a "
        "syslog severity 0-7 (0-1 fatal, 2 critical, 3 error, 4 warn, 5-6 info, 7 debug) or a "
        "Bunyan/Pino number (10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal). A value that "
        "is none of these stays in fields and the level is detected from the message.",
    )
    empty_messages: Literal["dlq", "skip"] = Field(
        "dlq",
        description="Records whose message is empty or only white space: 'dlq' parks them in the "
        "local DLQ like other rejected records; 'skip' drops them. Both are counted in "
        "http_ingest_records_rejected_total{reason='empty_message'} and do not fail the request.",
    )
    max_body_bytes: int = Field(
        10 << 20, ge=1024, le=1 << 30, description="Largest request body; larger ones get 413."
    )
    source_type: str = Field("api", min_length=1, description="source_type of records that give none.")
    source_id: str = Field("http", min_length=1, description="source_id of records that give none.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to every record (a record's own labels win)."
    )
    pipeline: str = Field("", description="Processing pipeline for ingested records.")
    queue_timeout: Duration = Field(
        0.5,
        description="How long a request waits for room in the dispatcher queue before it is "
        "refused with 429 (the client should retry later).",
    )
    acknowledgements: bool = Field(
        True,
        description="Answer 200 only once every record was acknowledged by the sinks (delivered or "
        "parked in the DLQ); false answers as soon as the records are queued.",
    )
    ack_timeout: Duration = Field(
        30.0,
        description="With acknowledgements, how long a request waits for them; then 503 (the "
        "records may still arrive: resending them is at-least-once).",
    )

    @model_validator(mode="after")
    def _check(self) -> HttpIngestConfig:
        check_record_keys(self)
        return self
