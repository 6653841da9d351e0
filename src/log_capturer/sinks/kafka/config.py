"""The ``sinks.kafka`` section: every key of the Kafka sink (``config.py`` maps them to librdkafka)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, model_validator

from log_capturer.config.base import Duration, Strict
from log_capturer.reliability.config import BackpressureConfig, CircuitBreakerConfig
from log_capturer.sinks.encoding import EncodingConfig
from log_capturer.sinks.tls import TLSConfig


class PartitioningConfig(Strict):
    enabled: bool = Field(True, description="Key messages so that one key stays on one partition.")
    strategy: Literal["hash", "round-robin", "random", "manual"] = Field(
        "hash",
        description="hash: murmur2 of the key, as Java clients do; round-robin and random ignore "
        "the key for placement; manual: the key_field value is the partition number.",
    )
    key_field: str = Field(
        "tenant_id",
        description="Label or parsed field whose value is the message key (falls back to source_id).",
    )


class AuthConfig(Strict):
    enabled: bool = Field(False, description="Authenticate with SASL.")
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-256", description="SASL mechanism."
    )
    username: str = Field("", description="SASL user (KAFKA_USERNAME overrides).")
    password: SecretStr = Field(
        SecretStr(""), description="SASL password (KAFKA_PASSWORD overrides). Never logged."
    )

    @model_validator(mode="after")
    def _check(self) -> AuthConfig:
        if self.enabled and not self.username:
            raise ValueError("auth is enabled but username is empty; set it or KAFKA_USERNAME")
        if self.enabled and not self.password.get_secret_value():
            raise ValueError("auth is enabled but password is empty; set it or KAFKA_PASSWORD")
        return self


class KafkaDLQConfig(Strict):
    enabled: bool = Field(
        True,
        description="The sink's dead-letter handling: the DLQ topic (send_on_error) and parking "
        "what timed out (send_on_timeout). False turns both off: records that time out are re-sent "
        "in place, and records Kafka rejects permanently go to the local store "
        "(dispatcher.dlq_config), the agent's last resort, never dropped.",
    )
    topic: str = Field("logs-dlq", min_length=1, description="The DLQ topic.")
    send_on_error: bool = Field(
        True,
        description="Records Kafka rejects permanently go to the DLQ topic (else straight to the "
        "local store).",
    )
    send_on_timeout: bool = Field(
        True,
        description="Records not delivered within the sink's 'timeout' are parked in the local store "
        "(and replayed by reprocessing) instead of being re-sent at once. False (or enabled: false) "
        "keeps re-sending them in place, in order, for as long as it takes.",
    )


class ExactlyOnceConfig(Strict):
    transactional_id: str = Field(
        "",
        max_length=200,
        description="The producer's transactional.id: stable across restarts of this agent and "
        "unique to it (the broker fences an older process with the same id, and the positions "
        "topic keys this agent's positions by it). '' = 'log-capturer-<host name>-0'. Set it "
        "explicitly where the host name changes at every restart (a Kubernetes pod: the node's "
        "name). With app.workers > 1 worker i uses '<id>-<i>' ('log-capturer-<host name>-<i>'), "
        "and reads the positions of the agent's other workers too (a file keeps its position when "
        "the number of workers changes).",
    )
    positions_topic: str = Field(
        "log-capturer-positions",
        min_length=1,
        description="The compacted topic the read positions of every file are committed to, in "
        "the same transaction as the lines (create it with cleanup.policy=compact; "
        "`log-capturer kafka create-topics` does).",
    )
    transaction_interval: Duration = Field(
        0.1,
        description="Longest a transaction stays open: lines become visible to read_committed "
        "consumers at most this much later (plus the commit's round trip).",
    )
    transaction_max_records: int = Field(
        50000, ge=1, le=10_000_000, description="A transaction is committed once it holds this many records."
    )
    transaction_timeout: Duration = Field(
        60.0,
        description="librdkafka transaction.timeout.ms: how long the broker keeps a transaction of "
        "a process that died open before it aborts it (a restart with the same transactional_id "
        "aborts it at once).",
    )


class PriorityRoutingConfig(Strict):
    enabled: bool = Field(True, description="Route records to topics by level.")
    high_topic: str = Field("logs-high-priority", description="ERROR, FATAL, CRITICAL.")
    normal_topic: str = Field("logs-normal-priority", description="WARN, INFO.")
    low_topic: str = Field("logs-low-priority", description="DEBUG, TRACE.")


_BROKER = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]+)$")


def _check_broker(value: str) -> str:
    """A bootstrap broker is host:port (an IPv6 host in brackets), the port 1-65535."""
    m = _BROKER.match(value.strip())
    if m and 1 <= int(m.group("port")) <= 65535:
        return value.strip()
    if "," in value:
        why = "several addresses in one item: write one broker per list item,"
    elif m:
        why = "the port is outside 1-65535: write host:port,"
    elif value.strip().startswith(":"):
        why = "no host: write host:port,"
    elif ":" not in value or value.strip().endswith(":"):
        why = "no port: write host:port,"
    else:
        why = "not host:port: write host:port,"
    raise ValueError(f"{why} such as 'kafka-1:9092' ('[::1]:9092' for an IPv6 address)")


Broker = Annotated[str, AfterValidator(_check_broker)]


#: librdkafka properties set from the ``auth`` and ``tls`` keys (the sink's and the source's).
SECURITY_PROPERTIES = frozenset(
    {
        "security.protocol",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "enable.ssl.certificate.verification",
        "ssl.endpoint.identification.algorithm",
    }
)

#: librdkafka properties owned by a ``sinks.kafka`` key (not settable via librdkafka_options).
MANAGED_PROPERTIES = SECURITY_PROPERTIES | frozenset(
    {
        "bootstrap.servers",
        "metadata.broker.list",
        "compression.type",
        "compression.codec",
        "compression.level",
        "acks",
        "request.required.acks",
        "enable.idempotence",
        "transactional.id",
        "transaction.timeout.ms",
        "batch.num.messages",
        "linger.ms",
        "queue.buffering.max.ms",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "retries",
        "message.send.max.retries",
        "message.max.bytes",
        "partitioner",
        "error_cb",
        "stats_cb",
        "logger",
        "on_delivery",
        "dr_cb",
        "dr_msg_cb",
    }
)


COMPRESSION_LEVELS = {"zstd": (1, 12), "gzip": (0, 9), "lz4": (0, 12)}


class KafkaSinkConfig(Strict):
    enabled: bool = Field(False, description="Ship records to Kafka.")
    brokers: list[Broker] = Field(
        default_factory=lambda: ["127.0.0.1:9092"],
        min_length=1,
        description="Bootstrap brokers, host:port with a port 1-65535 (an IPv6 host in brackets: "
        "'[::1]:9092'). KAFKA_BROKERS overrides, comma-separated.",
    )
    topic: str = Field("logs", min_length=1, description="Topic for records with no or unknown level.")
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "snappy", description="Batch compression codec (KAFKA_COMPRESSION overrides)."
    )
    compression_level: int | None = Field(
        None,
        description="Level of the codec (librdkafka compression.level): zstd 1-12, gzip 0-9, lz4 0-12; "
        "higher compresses more and costs more CPU. Unset: the codec's default (zstd 3). The shipped "
        "configs/config.yaml sets zstd 1: about 4 % more bytes than 3 for about a fifth less CPU "
        "in librdkafka's compressing thread (BENCHMARKS.md). snappy and none have no levels.",
    )
    max_message_bytes: int = Field(
        1048576, ge=1024, le=1_000_000_000, description="Largest record; larger ones go to the DLQ."
    )
    required_acks: Literal[0, 1, -1] = Field(
        1,
        description="0 = none: the broker confirms nothing, so a line is checkpointed once sent and "
        "lost if the broker never wrote it (`validate` and the agent's start-up log warn). 1 = the "
        "partition leader wrote it. -1 = every in-sync replica wrote it (enables idempotence): the "
        "setting for no loss.",
    )
    batch_size: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Most records per partition batch (librdkafka batch.num.messages; KAFKA_BATCH_SIZE "
        "overrides). A full batch leaves at once.",
    )
    batch_timeout: Duration = Field(
        5.0,
        description="Longest a record waits for its batch to fill (librdkafka linger.ms). With "
        "adaptive_batching, records leave sooner when the load is low.",
    )
    queue_size: int = Field(
        50000, ge=1, le=10_000_000, description="Records the producer may hold unacknowledged."
    )
    queue_max_bytes: int = Field(
        64 << 20,
        ge=1 << 20,
        le=2 << 30,
        description="Bytes of records the producer may hold unacknowledged (librdkafka "
        "queue.buffering.max.kbytes); with queue_size, it bounds the sink's memory.",
    )
    timeout: Duration = Field(
        30.0,
        description="How long a record may take to be delivered (librdkafka message.timeout.ms). With "
        "dlq_config.send_on_timeout, a record not delivered in time is parked in the local DLQ and "
        "replayed later; without it, librdkafka keeps retrying it in order, with no time limit. Also "
        "the time after which a sink that acknowledges nothing counts as stalled (backpressure).",
    )
    retry_max: int = Field(3, ge=0, description="Producer retries of one request (librdkafka retries).")
    partitioning: PartitioningConfig = Field(default_factory=PartitioningConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    tls: TLSConfig = Field(default_factory=TLSConfig)
    dlq_config: KafkaDLQConfig = Field(default_factory=KafkaDLQConfig)
    backpressure_config: BackpressureConfig = Field(default_factory=BackpressureConfig)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    priority_routing: PriorityRoutingConfig = Field(default_factory=PriorityRoutingConfig)
    encoding: EncodingConfig = Field(
        default_factory=EncodingConfig,
        description="How each line is written as a record: codec json (the envelope, the default), "
        "raw (the line as read) or logfmt; only_fields / except_fields; timestamp_format "
        "(docs/kafka-sink.md, 'Record encodings').",
    )
    headers: list[Literal["level", "source_type", "source_id", "labels", "host"]] = Field(
        default_factory=list,
        description="Kafka headers added to every record so consumers can route without parsing "
        "the body (e.g. [level, source_type, host]); 'labels' is the source's labels as a JSON "
        "object. With encoding.codec: raw they carry what the envelope did. Off by default.",
    )
    adaptive_batching: bool = Field(
        True,
        description="Smart batching: the batch size follows the arrival rate, within batch_size and "
        "batch_timeout. When the dispatcher has handed over all it had, the records waiting in the "
        "producer are sent at once, unless the previous such send is still unacknowledged: then the "
        "lines that arrive gather until it is (as in Nagle's algorithm). A trickle leaves at once in "
        "small batches (one round trip instead of batch_timeout). Records that have waited a round "
        "trip (at least 20 ms) leave anyway, the dispatcher busy or the previous send "
        "unacknowledged: a steady stream of small chunks (many files, a line at a time) does not "
        "wait for batches to fill (not when batch_size records or more came since the last send, "
        "nor with a batch_timeout under twice that wait: librdkafka sends them then). "
        "Off: every batch waits for batch_size records or batch_timeout.",
    )
    native_producer: bool = Field(
        True,
        description="Send chunks through the agent's own librdkafka producer (the librdkafka that "
        "confluent-kafka ships), which counts the delivery reports of a chunk in C: every record "
        "still needs its own acknowledgement before the checkpoint moves, at about half the CPU "
        "per record; chunks with headers too (record by record, the headers built in C). Retries, "
        "the DLQ topic, replays and metadata requests use confluent-kafka's producer either way. "
        "false: confluent-kafka for everything.",
    )
    delivery: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="at_least_once: every line arrives, and after a kill -9 the lines read since "
        "the last position save arrive again. exactly_once: the lines and the read positions of "
        "every file are written in the same Kafka transaction, so a consumer with "
        "isolation.level=read_committed sees every line of a file exactly once, across kill -9 and "
        "restarts (docs/exactly-once.md). Needs required_acks: -1, the file source "
        "and/or Docker's container logs as the only sources, Kafka as the only sink, and brokers "
        "with transactions.",
    )
    exactly_once: ExactlyOnceConfig = Field(default_factory=ExactlyOnceConfig)
    librdkafka_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Advanced: extra librdkafka producer properties. Properties that another key "
        "of this section sets cannot be overridden here.",
    )

    @model_validator(mode="after")
    def _check(self) -> KafkaSinkConfig:
        if self.batch_timeout > 900:
            raise ValueError("batch_timeout can be at most 900s (librdkafka linger.ms limit)")
        if self.timeout < 1:
            raise ValueError("timeout must be at least 1s")
        if self.compression_level is not None:
            low, high = COMPRESSION_LEVELS.get(self.compression, (0, -1))
            if high < 0:
                raise ValueError(
                    f"compression_level does not apply to compression: {self.compression}; remove it"
                )
            if not low <= self.compression_level <= high:
                raise ValueError(
                    f"compression_level {self.compression_level} is out of range for "
                    f"{self.compression}: use {low} to {high}"
                )
        if self.timeout <= self.batch_timeout:
            raise ValueError(
                f"timeout ({self.timeout:g}s) must be longer than batch_timeout "
                f"({self.batch_timeout:g}s): a record must be able to wait for its batch and still be sent"
            )
        if self.delivery == "exactly_once" and self.required_acks != -1:
            raise ValueError(
                "delivery: exactly_once needs required_acks: -1 (transactions need the idempotent "
                "producer); set required_acks: -1"
            )
        taken = sorted(set(self.librdkafka_options) & MANAGED_PROPERTIES)
        if taken:
            raise ValueError(
                f"librdkafka_options may not set {', '.join(taken)}: use the matching sinks.kafka key "
                "(see docs/kafka-sink.md)"
            )
        return self
