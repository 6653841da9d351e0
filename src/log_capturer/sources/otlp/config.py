"""The ``otlp`` section: OpenTelemetry logs received over OTLP/HTTP (``POST /v1/logs``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from log_capturer.config.base import Duration, Port, Strict

AttributeList = list[Annotated[str, Field(min_length=1)]]


class OtlpConfig(Strict):
    enabled: bool = Field(
        False,
        description="Receive OpenTelemetry logs over OTLP/HTTP on POST /v1/logs of a listener of "
        "its own (host, port): protobuf (application/x-protobuf) or OTLP/JSON (application/json), "
        "gzip bodies too; what the OpenTelemetry SDKs' and the Collector's otlphttp exporters send. "
        "Answered once the sinks acknowledged the records, with OTLP's partial success when some "
        "were rejected. gRPC is not served.",
    )
    host: str = Field(
        "127.0.0.1",
        description="Address the listener binds to; 0.0.0.0 to receive from other machines.",
    )
    port: Port = Field(4318, description="Listener port (4318 is OTLP/HTTP's default).")
    every_worker: bool = Field(
        True,
        description="With app.workers > 1: every worker listens on the port (SO_REUSEPORT: the kernel "
        "spreads the clients' connections over the workers, so the input uses every worker's core; "
        "a connection stays with one worker, which answers what it received). false: worker 0 only.",
    )
    resource_attributes_as_labels: AttributeList = Field(
        default_factory=lambda: ["service.name"],
        description="Resource attributes that become labels of the records (a value that is not "
        "text is written as JSON); the other resource attributes are in fields.resource.",
    )
    scope_attributes_as_labels: AttributeList = Field(
        default_factory=list,
        description="Instrumentation scope attributes that become labels; the scope's name, version "
        "and other attributes are in fields.scope.",
    )
    empty_bodies: Literal["dlq", "skip"] = Field(
        "dlq",
        description="Log records with no body or an empty text body (there is no message to ship): "
        "'dlq' parks them in the local DLQ like other rejected records, 'skip' drops them; both "
        "are counted in otlp_records_rejected_total{reason='empty_body'} and reported to the "
        "client as rejected (partial success).",
    )
    max_body_bytes: int = Field(
        10 << 20,
        ge=1024,
        le=1 << 30,
        description="Largest request body (after gzip decompression); larger ones get 413.",
    )
    source_type: str = Field("otlp", min_length=1, description="source_type of the records.")
    source_id: str = Field("otlp", min_length=1, description="source_id of the records.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels added to every record (labels taken from attributes win).",
    )
    pipeline: str = Field("", description="Processing pipeline for the received records.")
    queue_timeout: Duration = Field(
        0.5,
        description="How long a request waits for room in the dispatcher queue (the sinks hold the "
        "agent back) before it is answered 429 with Retry-After, which the exporters retry.",
    )
    ack_timeout: Duration = Field(
        30.0,
        description="How long a request waits for the sinks to acknowledge its records; then 503 "
        "with Retry-After (the records may still be delivered: resending is at-least-once).",
    )
