"""The ``sinks.loki`` section: records pushed to Grafana Loki (or any server of its push API).

The keys are the original agent's (``url``, ``push_endpoint``, ``tenant_id``, ``timeout``,
``batch_size``, ``batch_timeout``, ``max_request_size``, ``queue_size``, ``default_labels``,
``headers``, ``auth``, ``tls``, ``backpressure_config``, ``dlq_config``, ``adaptive_batching``,
``timestamp_learning``), plus the delivery keys every sink of the engine has
(``queue_max_bytes``, ``circuit_breaker``) and what shapes the push (``push_format``, the labels,
``encoding`` / ``line_format``, ``structured_metadata``, ``out_of_order_action``).

The entry's line is made by the ``encoding`` block every sink has (:mod:`log_capturer.sinks.encoding`,
Vector's ``encoding.codec``); ``line_format`` is the shorter spelling of its codec (json = json,
key_value = logfmt, message = raw). Both may be given when they agree; when they disagree the
configuration is refused, naming both. The older string form ``encoding: protobuf | json`` (the
push body) is read as ``push_format``.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from log_capturer.config.base import Duration, Strict
from log_capturer.reliability.config import BackpressureConfig, CircuitBreakerConfig
from log_capturer.sinks.encoding import EncodingConfig
from log_capturer.sinks.tls import TLSConfig

#: A Loki label name.
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: What a field reference may name: a top-level member of the record, or one of its labels / fields.
FIELD_REF = re.compile(r"^(level|source_type|source_id|message|(labels|fields)\.[^.\s]+)$")
LABEL_RULE = "letters, digits and '_', not starting with a digit"
FIELD_HELP = "level, source_type, source_id, message, labels.<name> or fields.<name>"
#: ``line_format`` as the ``encoding.codec`` it names.
LINE_CODEC = {"json": "json", "key_value": "logfmt", "message": "raw"}


def _field_ref(value: str, key: str) -> str:
    if not FIELD_REF.match(value):
        raise ValueError(f"{key}: {value!r} is not a record field; use {FIELD_HELP}")
    return value


class LokiAuthConfig(Strict):
    """How the agent authenticates to Loki (or the gateway in front of it)."""

    type: Literal["none", "basic", "bearer"] = Field(
        "none", description="none; basic (username and password); bearer (token)."
    )
    username: str = Field("", description="Basic auth user (LOKI_USERNAME overrides).")
    password: SecretStr = Field(
        SecretStr(""), description="Basic auth password (LOKI_PASSWORD overrides). Never logged."
    )
    token: SecretStr = Field(SecretStr(""), description="Bearer token (LOKI_TOKEN overrides). Never logged.")

    @model_validator(mode="after")
    def _check(self) -> LokiAuthConfig:
        if self.type == "basic" and not self.username:
            raise ValueError("auth.type is basic but auth.username is empty; set it or LOKI_USERNAME")
        if self.type == "bearer" and not self.token.get_secret_value():
            raise ValueError("auth.type is bearer but auth.token is empty; set it or LOKI_TOKEN")
        return self


class LokiDLQConfig(Strict):
    """What the Loki sink parks in the local DLQ (``dispatcher.dlq_config``); Loki has no
    dead-letter output of its own, so the local store is where refused records go."""

    enabled: bool = Field(
        True,
        description="Park what times out (send_on_timeout) and, once the sink is stalled, what "
        "waits for it (send_on_queue_full). False turns both off: records are retried in place and "
        "the sources wait. Records Loki refuses for good are parked either way (never dropped).",
    )
    send_on_queue_full: bool = Field(
        True,
        description="Once the sink acknowledged nothing for 'timeout' while its queue is full, the "
        "lines waiting for it overflow to the local DLQ (backpressure_config), so the other sinks "
        "and the sources go on. False: they wait (the sources are held) until Loki answers.",
    )
    send_on_timeout: bool = Field(
        True,
        description="A record not delivered within 'timeout' (Loki away, answering 5xx or 429) is "
        "parked and replayed by reprocessing later; false: it is retried until Loki takes it.",
    )
    send_on_error: bool = Field(
        True,
        description="Records Loki refuses for good (400: too large, timestamp too old with "
        "out_of_order_action: drop, invalid labels) are parked with Loki's message. Must be true: "
        "there is nowhere else to put them, and the agent never drops a line.",
    )

    @field_validator("send_on_error")
    @classmethod
    def _never_drop(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "false would drop the records Loki refuses; they are always parked in the local DLQ "
                "(set it to true or remove it)"
            )
        return value


class AdaptiveBatchingConfig(Strict):
    """Batches that follow the load: under load a push carries up to ``max_batch_size`` entries; a
    trickle leaves after ``min_flush_delay`` rather than ``batch_timeout``."""

    enabled: bool = Field(
        True,
        description="A batch leaves once the dispatcher has nothing more for the sink and no push is "
        "in flight (as Nagle's algorithm), else when full or after max_flush_delay. False: it waits "
        "for batch_size entries or batch_timeout.",
    )
    min_batch_size: int = Field(
        1, ge=1, description="The fewest entries a push waits for before min_flush_delay has passed."
    )
    max_batch_size: int = Field(
        0,
        ge=0,
        description="Most entries per push while adaptive (0: batch_size). Also bounded by max_request_size.",
    )
    initial_batch_size: int = Field(
        0, ge=0, description="Entries per push before the first push was answered (0: batch_size)."
    )
    min_flush_delay: Duration = Field(
        0.0, description="Least time a batch of fewer than min_batch_size entries waits."
    )
    max_flush_delay: Duration = Field(
        0.0, description="Most time an entry waits for its batch while adaptive (0: batch_timeout)."
    )


class TimestampLearningConfig(Strict):
    """Loki refuses entries older than its ``reject_old_samples_max_age`` (400 "timestamp too
    old"). The sink checks entries' age before sending, and learns Loki's limit from its errors,
    so such entries are parked (or clamped) at once instead of being retried for ever."""

    enabled: bool = Field(True, description="Check the age of entries before sending them.")
    default_max_age: Duration = Field(
        7 * 86400.0,
        description="The oldest entry age Loki takes, until learned from its errors (Loki's "
        "default reject_old_samples_max_age is 168h).",
    )
    clamp_enabled: bool = Field(
        False,
        description="Entries older than the limit are sent with their timestamp moved to now (their "
        "original time stays in the line); false: they are parked in the local DLQ with reason "
        "timestamp_too_old.",
    )
    learn_from_errors: bool = Field(
        True,
        description="Read the limit from Loki's 'timestamp too old' errors ('oldest acceptable "
        "timestamp is: ...') and use it for the next entries.",
    )
    min_learning_window: Duration = Field(
        3600.0,
        description="The shortest limit ever learned from an error (a message read wrongly cannot "
        "make the sink refuse recent entries).",
    )


class LokiSinkConfig(Strict):
    enabled: bool = Field(False, description="Push records to Loki.")
    url: str = Field(
        "http://localhost:3100",
        description="Loki's base URL (http or https), e.g. 'http://loki:3100'. The push goes to url "
        "+ push_endpoint.",
    )
    push_endpoint: str = Field(
        "/loki/api/v1/push",
        description="Path of the push API, appended to url (VictoriaLogs: '/insert/loki/api/v1/push').",
    )
    push_format: Literal["protobuf", "json"] = Field(
        "protobuf",
        description="protobuf: Loki's PushRequest compressed with snappy (what Promtail and Vector "
        "send); json: the JSON push body, compressed as 'compression' says. (The older spelling "
        "'encoding: protobuf' or 'encoding: json' still means this.)",
    )
    encoding: EncodingConfig = Field(
        default_factory=EncodingConfig,
        description="The entry's line, the same block as sinks.kafka.encoding: codec json (the "
        "record without its timestamp, which is the entry's; the default), logfmt or raw (the line "
        "as read); only_fields / except_fields (labels.app, fields.user.id); timestamp_format. "
        "The timestamp is in the line only when only_fields names it. line_format is the same "
        "choice as encoding.codec.",
    )
    compression: Literal["gzip", "none"] = Field(
        "gzip", description="Compression of JSON bodies (protobuf bodies are always snappy)."
    )
    tenant_id: str = Field(
        "",
        description="The tenant, sent as X-Scope-OrgID ('' : no header, a single-tenant Loki).",
    )
    tenant_field: str = Field(
        "",
        description="Take each record's tenant from this field (e.g. labels.tenant); records without "
        "it use tenant_id. Each push carries one tenant's entries.",
    )
    timeout: Duration = Field(
        30.0,
        description="The budget Loki may hold the lines: a record not delivered for this long (Loki "
        "away, answering 5xx or 429) is parked in the local DLQ (dlq_config.send_on_timeout), and "
        "once the sink acknowledged nothing for this long the lines waiting for it overflow there too "
        "(backpressure_config), so the other sinks and the sources go on.",
    )
    request_timeout: Duration = Field(
        10.0, description="How long one push may take before it counts as failed (and is retried)."
    )
    batch_size: int = Field(
        1000, ge=1, le=1_000_000, description="Most entries per push. A full batch leaves at once."
    )
    batch_timeout: Duration = Field(
        1.0, description="Longest an entry waits for its batch to fill (see adaptive_batching)."
    )
    max_request_size: int = Field(
        4 << 20,
        ge=1024,
        description="Most bytes of entries (lines, labels, metadata, before compression) per push. A "
        "record larger than this alone is parked (reason too_large) rather than sent.",
    )
    max_in_flight: int = Field(
        2, ge=1, le=64, description="Pushes in flight at once (more hides the network's latency)."
    )
    queue_size: int = Field(
        50000,
        ge=1,
        le=10_000_000,
        description="Records the sink may hold unacknowledged (batching, in flight, waiting for a "
        "retry); its backpressure levels are shares of it.",
    )
    queue_max_bytes: int = Field(
        64 << 20, ge=1 << 20, le=2 << 30, description="The same, in bytes of records."
    )
    default_labels: dict[str, str] = Field(
        default_factory=lambda: {"job": "log-capturer"},
        description="Static stream labels of every entry {name: value}.",
    )
    label_fields: dict[str, str] = Field(
        default_factory=lambda: {"level": "level", "source_type": "source_type", "source_id": "source_id"},
        description=f"Stream labels taken from each record {{label name: field}}; a field is {FIELD_HELP}. "
        "An empty value adds no label. Keep it to fields with few distinct values (see max_streams).",
    )
    source_labels: bool = Field(
        True, description="The labels of the record's source (e.g. a container's) are stream labels too."
    )
    max_streams: int = Field(
        10000,
        ge=1,
        description="Most distinct streams (label sets) the sink creates. An entry that would create "
        'one more is sent under the default_labels plus stream_overflow="true" (its own labels stay '
        "in its line), counted in loki_stream_overflow_total and logged: label cardinality cannot blow "
        "up Loki's index, and no entry is lost or silently merged.",
    )
    line_format: Literal["json", "key_value", "message"] = Field(
        "json",
        description="The entry's line, the short form of encoding.codec: json (encoding.codec: json): "
        "the record as Kafka gets it, without its timestamp (the entry's) and the "
        "structured_metadata fields; key_value (encoding.codec: logfmt): the same as name=value "
        "pairs (Fluent Bit's key_value); message (encoding.codec: raw): the line as read. Given "
        "with encoding.codec, the two must agree.",
    )
    structured_metadata: list[str] = Field(
        default_factory=list,
        description=f"Fields sent as the entry's structured metadata rather than in its line ({FIELD_HELP}).",
    )
    out_of_order_action: Literal["drop", "rewrite_timestamp"] = Field(
        "drop",
        description="What to do with an entry Loki refuses for its timestamp (too old, out of order): "
        "drop: it leaves the push and is parked in the local DLQ with Loki's message (reason "
        "timestamp_rejected), never lost; rewrite_timestamp: it is sent again stamped now (its "
        "original time stays in its line), as Vector does.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers of every push {name: value}."
    )
    auth: LokiAuthConfig = Field(default_factory=LokiAuthConfig)
    tls: TLSConfig = Field(default_factory=TLSConfig)
    dlq_config: LokiDLQConfig = Field(default_factory=LokiDLQConfig)
    adaptive_batching: AdaptiveBatchingConfig = Field(default_factory=AdaptiveBatchingConfig)
    timestamp_learning: TimestampLearningConfig = Field(default_factory=TimestampLearningConfig)
    backpressure_config: BackpressureConfig = Field(default_factory=BackpressureConfig)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL; write it like 'http://loki:3100'")
        return value.strip().rstrip("/")

    @field_validator("push_endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/', e.g. '/loki/api/v1/push'")
        return value

    @field_validator("default_labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not LABEL_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a Loki label name (letters, digits, '_'; not first a digit)"
                )
        return value

    @field_validator("label_fields")
    @classmethod
    def _label_fields(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            if not LABEL_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a Loki label name (letters, digits, '_'; not first a digit)"
                )
            _field_ref(ref, f"label {name}")
        return value

    @field_validator("structured_metadata")
    @classmethod
    def _metadata(cls, value: list[str]) -> list[str]:
        for ref in value:
            _field_ref(ref, "structured_metadata")
        return value

    @field_validator("tenant_field")
    @classmethod
    def _tenant_field(cls, value: str) -> str:
        return _field_ref(value, "tenant_field") if value else value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in ("content-type", "content-encoding", "content-length"):
                raise ValueError(f"{name} is set by the sink itself; remove it from headers")
        return value

    @model_validator(mode="before")
    @classmethod
    def _push_format(cls, data: Any) -> Any:
        """``encoding: protobuf | json`` (a string): the push body, as before ``push_format``."""
        if isinstance(data, dict) and isinstance(data.get("encoding"), str):
            data = dict(data)
            body = data.pop("encoding")
            if body not in ("protobuf", "json"):
                raise ValueError(
                    f"encoding: {body!r} is neither a push body (protobuf, json: now push_format) nor "
                    "an encoding block; write push_format: protobuf | json, or encoding: {codec: json}"
                )
            if data.get("push_format", body) != body:
                raise ValueError(
                    f"encoding: {body} and push_format: {data['push_format']} disagree (the string form "
                    "of encoding is push_format); keep push_format"
                )
            data["push_format"] = body
        return data

    @property
    def line_encoding(self) -> EncodingConfig:
        """The block the entry's line is made by: ``encoding``, its codec from ``line_format``
        when only that names it."""
        enc = self.encoding
        if "codec" in enc.model_fields_set or self.line_format == "json":
            return enc
        return self._with_codec(LINE_CODEC[self.line_format])

    def _with_codec(self, codec: str) -> EncodingConfig:
        try:
            given = self.encoding.model_dump(exclude_unset=True)
            return EncodingConfig.model_validate({**given, "codec": codec})
        except ValueError as exc:
            errors = getattr(exc, "errors", None)
            text = errors()[0]["msg"].removeprefix("Value error, ") if callable(errors) else str(exc)
            raise ValueError(f"{text} (line_format: {self.line_format} is encoding.codec: {codec})") from None

    @model_validator(mode="after")
    def _check(self) -> LokiSinkConfig:
        codec = self.encoding.codec if "codec" in self.encoding.model_fields_set else None
        if "line_format" in self.model_fields_set and codec and LINE_CODEC[self.line_format] != codec:
            raise ValueError(
                f"line_format: {self.line_format} and encoding.codec: {codec} disagree (line_format "
                f"{self.line_format} is encoding.codec: {LINE_CODEC[self.line_format]}); keep one of them, "
                "encoding.codec preferably"
            )
        self.line_encoding  # noqa: B018 - its codec and the block's other keys must fit together
        if self.timeout < 1:
            raise ValueError("timeout must be at least 1s")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be more than 0s")
        if self.tls.enabled and not self.url.startswith("https://"):
            raise ValueError("tls.enabled needs an https:// url; change url to https://...")
        return self

    @property
    def push_url(self) -> str:
        return self.url + self.push_endpoint

    @property
    def destination(self) -> str:
        """The push URL without credentials: the records' destination in metrics and DLQ entries."""
        parts = urlsplit(self.push_url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return f"{parts.scheme}://{host}{parts.path}"
