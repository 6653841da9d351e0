"""The ``forward`` section: the Fluent forward protocol listener (Fluent Bit, Fluentd, fluent-logger)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from log_capturer.config.base import Port, Strict
from log_capturer.sources.http.config import KeyList, check_record_keys
from log_capturer.sources.listener_config import ListenerTLSConfig


class ForwardTLSConfig(ListenerTLSConfig):
    enabled: bool = Field(
        False,
        description="The listener speaks TLS only (1.2 or newer), as Fluent Bit's `tls on` and Fluentd's "
        "`transport tls` expect. A failed handshake is counted in "
        "errors_total{component='forward_source',error_type='tls_handshake'} and logged (at most once "
        "per 10 s).",
    )


class ForwardConfig(Strict):
    enabled: bool = Field(
        False,
        description="Receive events over the Fluent forward protocol (v1, TCP): what Fluent Bit's "
        "`forward` output, Fluentd's `out_forward`, the Docker fluentd log driver and the fluent-logger "
        "libraries send. Message, Forward, PackedForward and CompressedPackedForward (gzip) modes. A "
        "message with the `chunk` option is answered {ack: chunk} only once every record of it was "
        "acknowledged by the sinks (delivered, or parked in the DLQ), so the client resends what was "
        "not. Each record is shaped like an HTTP ingest record (message_key, timestamp_key, level_key); "
        "the event time is the record timestamp unless timestamp_key finds one.",
    )
    host: str = Field("0.0.0.0", description="Address the listener binds to.")
    port: Port = Field(24224, description="TCP port (24224 is the forward protocol's usual one).")
    every_worker: bool = Field(
        True,
        description="With app.workers > 1: every worker listens on the port (SO_REUSEPORT: the kernel "
        "spreads the clients' connections over the workers, so the input uses every worker's core; "
        "a connection stays with one worker, which answers what it received). false: worker 0 only. "
        "max_connections is then per worker.",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Most simultaneous connections (per worker, see every_worker); further ones are "
        "closed at once.",
    )
    max_message_bytes: int = Field(
        64 << 20,
        ge=1 << 20,
        le=1 << 30,
        description="Largest forward message (one msgpack array: a whole PackedForward chunk, or a "
        "decompressed CompressedPackedForward one). A client that sends a larger one is disconnected "
        "(logged and counted in errors_total{component='forward_source',error_type='message_too_large'}); "
        "Fluent Bit's chunks are about 2 MB, Fluentd's chunk_limit_size 8 MB.",
    )
    tag_label: str = Field(
        "tag",
        description="Label that holds the event's Fluent tag (e.g. kube.var.log.containers.web-1.log); "
        "'' leaves the tag out. The tag is a label, not a field: records of one tag share one origin.",
    )
    message_key: KeyList = Field(
        default_factory=lambda: ["log", "message", "msg"],
        description="Record member(s) holding the message, tried in order: 'log' (Fluent Bit's tail "
        "and Docker), 'message' (fluent-logger, Vector), 'msg' (Bunyan, Pino). One trailing newline is "
        "removed. A record with none of them is rejected to the local DLQ with its reason (the other "
        "records of its message are shipped). Other members go to fields.",
    )
    timestamp_key: KeyList = Field(
        default_factory=lambda: ["timestamp", "@timestamp", "date", "time"],
        description="Record member(s) holding the event time, tried in order (as in "
        "http_ingest.timestamp_key); else the event's own time (EventTime or integer seconds).",
    )
    level_key: KeyList = Field(
        default_factory=lambda: ["level", "severity"],
        description="Record member(s) holding the level, tried in order (as in http_ingest.level_key).",
    )
    empty_messages: Literal["dlq", "skip"] = Field(
        "dlq",
        description="Records whose message is empty or only white space: 'dlq' parks them in the "
        "local DLQ like other rejected records; 'skip' drops them. Both are counted in "
        "forward_records_rejected_total{reason='empty_message'}.",
    )
    source_type: str = Field("forward", min_length=1, description="source_type of records that give none.")
    source_id: str = Field(
        "",
        description="source_id of records that give none; '' = forward://SENDER-IP (records of one "
        "sender keep their order).",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to every record (a record's own labels win)."
    )
    pipeline: str = Field("", description="Processing pipeline for forwarded records.")
    shared_key: SecretStr = Field(
        SecretStr(""),
        description="Shared-key authentication (the protocol's HELO/PING/PONG handshake): clients must "
        "prove they know this key (Fluent Bit `Shared_Key`, Fluentd `<security> shared_key`) before "
        "anything they send is read; a wrong key is answered PONG false and disconnected (counted in "
        "errors_total{component='forward_source',error_type='auth_failed'}). '' = no authentication. "
        "Never logged.",
    )
    self_hostname: str = Field(
        "log-capturer",
        min_length=1,
        description="Hostname the listener gives in the handshake (Fluentd's `self_hostname`); clients "
        "check the shared key digest against it, not the name itself.",
    )
    tls: ForwardTLSConfig = Field(default_factory=ForwardTLSConfig)

    @model_validator(mode="after")
    def _check(self) -> ForwardConfig:
        check_record_keys(self)
        return self
