"""The ``kafka`` section: the Kafka source (a consumer of a consumer group)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from log_capturer.config.base import Duration, Strict
from log_capturer.sinks.kafka.config import SECURITY_PROPERTIES, AuthConfig, Broker
from log_capturer.sinks.tls import TLSConfig
from log_capturer.sources.http.config import KeyList, check_record_keys

#: librdkafka consumer properties the source sets itself: ``librdkafka_options`` may not.
RESERVED_OPTIONS = SECURITY_PROPERTIES | frozenset(
    {
        "bootstrap.servers",
        "metadata.broker.list",
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "partition.assignment.strategy",
        "isolation.level",
        "auto.offset.reset",
        "session.timeout.ms",
        "max.poll.interval.ms",
        "on_commit",
        "error_cb",
        "stats_cb",
        "logger",
    }
)

Topic = Annotated[str, Field(min_length=1)]


class KafkaSourceConfig(Strict):
    enabled: bool = Field(
        False,
        description="Consume log topics as a member of a consumer group and ship their records to "
        "the sinks. A partition's offset is committed only up to the first record not yet "
        "delivered or parked in the DLQ by every sink it was routed to, so a crash, a restart or "
        "a rebalance never skips a record (records after it may be read twice). Run more agents "
        "with the same group_id to share the partitions.",
    )
    brokers: list[Broker] = Field(
        default_factory=lambda: ["localhost:9092"],
        min_length=1,
        description="Bootstrap brokers, host:port, one per item.",
    )
    group_id: str = Field("log-capturer", min_length=1, description="The consumer group (group.id).")
    topics: list[Topic] = Field(
        default_factory=lambda: ["logs"],
        min_length=1,
        description="Topics to consume. A name starting with '^' is a regular expression matched "
        "against every topic of the cluster (librdkafka's subscription by pattern).",
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest",
        description="Where a partition with no committed offset of the group starts: 'earliest' "
        "reads what the topic holds, 'latest' only what is produced from now on.",
    )
    format: Literal["auto", "json", "raw"] = Field(
        "auto",
        description="How a message value becomes a record. 'json': a JSON object, read like an "
        "HTTP ingest record (message_key, timestamp_key, level_key; source_type, source_id and "
        "labels members kept; other members go to fields): the records the Kafka sink writes come "
        "back as they were shipped. A value that is not a JSON object is parked in the local DLQ "
        "(invalid_record). 'raw': the value (UTF-8) is the message. 'auto': a JSON object as "
        "'json', anything else as 'raw'.",
    )
    message_key: KeyList = Field(
        default_factory=lambda: ["message", "log", "msg"],
        description="Record member(s) holding the message (json records), tried in order.",
    )
    timestamp_key: KeyList = Field(
        default_factory=lambda: ["timestamp", "@timestamp", "date", "time"],
        description="Record member(s) holding the event time (json records), tried in order; "
        "else the message's Kafka timestamp.",
    )
    level_key: KeyList = Field(
        default_factory=lambda: ["level", "severity"],
        description="Record member(s) holding the level (json records), tried in order.",
    )
    source_type: str = Field(
        "kafka", min_length=1, description="source_type of records that give none (raw records: all)."
    )
    source_id: str = Field(
        "", description="source_id of records that give none; '' (the default): the topic's name."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to every record (a record's own labels win)."
    )
    pipeline: str = Field("", description="Processing pipeline for the consumed records.")
    metadata_field: str = Field(
        "kafka",
        min_length=1,
        description="Field (in each record's fields) that holds where the record was read: "
        "{topic, partition, offset, key, timestamp (ms), headers (when the message has some; "
        "a header given twice: its last value)}. The Elasticsearch sink derives the "
        "document _id from topic, partition and offset, so a record read twice is written once.",
    )
    session_timeout: Duration = Field(
        45.0, description="session.timeout.ms: a member silent this long leaves the group."
    )
    max_poll_interval: Duration = Field(
        300.0,
        description="max.poll.interval.ms. The source polls at least every poll_timeout, and "
        "while the sinks hold it back at least once a second (after a second its partitions are "
        "paused), so this is only reached when the agent hangs.",
    )
    poll_timeout: Duration = Field(0.5, description="Longest wait of one poll for records.")
    batch_size: int = Field(
        5000, ge=1, le=1_000_000, description="Most records taken from the consumer per poll."
    )
    max_in_flight: int = Field(
        100_000,
        ge=1,
        description="Most records read and not yet acknowledged by the sinks; above it the "
        "source reads nothing until acknowledgements make room, and after a second of that it "
        "pauses the assigned partitions (librdkafka pause, which drops what was prefetched). "
        "With batch_size and librdkafka's prefetch (queued.max.messages.kbytes) this bounds the "
        "memory the source holds.",
    )
    commit_interval: Duration = Field(
        1.0,
        description="How often the acknowledged offsets are committed (asynchronously). They are "
        "also committed synchronously when partitions are revoked and when the agent stops.",
    )
    revoke_timeout: Duration = Field(
        10.0,
        description="On a rebalance, how long to wait for the records of revoked partitions that "
        "are in flight before committing what was acknowledged; records not acknowledged by then "
        "are read again by the partition's next owner (duplicates, never a loss).",
    )
    lag_threshold: int = Field(
        1_000_000,
        ge=0,
        description="/health reports the source degraded while its partitions' lag (records not "
        "committed yet, summed over its assigned partitions; a partition it has not read from "
        "counts from the group's committed offset, else from where auto_offset_reset starts; "
        "while the partitions are paused, their high watermarks are asked of the broker) is "
        "above this; 0: never. It is also degraded while no partition is assigned for longer than "
        "session_timeout (more members than partitions, or the group cannot be joined).",
    )
    auth: AuthConfig = Field(default_factory=AuthConfig, description="SASL, as sinks.kafka.auth.")
    tls: TLSConfig = Field(default_factory=TLSConfig, description="TLS, as sinks.kafka.tls.")
    librdkafka_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Other librdkafka consumer properties, passed through (e.g. fetch.max.bytes). "
        "The properties this section sets cannot be given here. The prefetch is bounded by "
        "default, and each of these may be given to change it: queued.min.messages 10000, "
        "queued.max.messages.kbytes 16384, fetch.max.bytes 1 MiB (at least message.max.bytes), "
        "max.partition.fetch.bytes 512 KiB, fetch.queue.backoff.ms 20 (librdkafka's defaults "
        "hold up to 64 MiB and 100,000 records, and wait a second before fetching again).",
    )

    @field_validator("topics")
    @classmethod
    def _check_topics(cls, topics: list[str]) -> list[str]:
        for topic in topics:
            if topic.startswith("^"):
                try:
                    re.compile(topic)
                except re.error as exc:
                    raise ValueError(f"{topic!r} is not a valid regular expression ({exc})") from None
        return topics

    @field_validator("librdkafka_options")
    @classmethod
    def _check_options(
        cls, options: dict[str, str | int | float | bool]
    ) -> dict[str, str | int | float | bool]:
        taken = sorted(set(options) & RESERVED_OPTIONS)
        if taken:
            raise ValueError(
                f"{', '.join(taken)} cannot be set here: use the keys of the kafka section "
                "(brokers, group_id, auto_offset_reset, session_timeout, auth, tls, ...)"
            )
        return options

    @model_validator(mode="after")
    def _check(self) -> KafkaSourceConfig:
        check_record_keys(self)
        if self.max_poll_interval < self.session_timeout:
            raise ValueError("max_poll_interval must be at least session_timeout; raise max_poll_interval")
        return self
