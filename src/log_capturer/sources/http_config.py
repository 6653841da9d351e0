"""The ``http_ingest`` section: records posted to the API server."""

from __future__ import annotations

from pydantic import Field

from log_capturer.config.base import Duration, Strict


class HttpIngestConfig(Strict):
    enabled: bool = Field(
        True,
        description="Accept records on POST /api/v1/logs of the API server (server.port): one JSON "
        "object, a JSON array or NDJSON, each {message, level, source_type, source_id, labels, "
        "timestamp, fields}.",
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
