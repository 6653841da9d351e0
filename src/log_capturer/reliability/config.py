"""Configuration of what keeps lines safe: the local DLQ and its reprocessing
(``dispatcher.dlq_config``), and each sink's backpressure and circuit breaker."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from log_capturer.config.base import Duration, Strict


class ReprocessingConfig(Strict):
    enabled: bool = Field(
        True,
        description="Replay parked DLQ entries to their topic automatically, while the Kafka sink is "
        "healthy (circuit breaker closed, a broker reachable).",
    )
    interval: Duration = Field(300.0, description="How often the DLQ is checked for entries due.")
    max_retries: int = Field(
        3,
        ge=0,
        description="Automatic replays of one entry; after that it stays parked until replayed by hand "
        "(`log-capturer dlq replay`, which replays every entry, or POST /dlq/reprocess?all=true) or purged.",
    )
    initial_delay: Duration = Field(
        120.0, description="Delay between parking an entry and its first replay (next_reprocess_time)."
    )
    delay_multiplier: float = Field(
        2.0, ge=1.0, description="After a failed replay the delay is multiplied by this (exponential)."
    )
    max_delay: Duration = Field(1800.0, description="Cap on the delay between two replays of one entry.")
    batch_size: int = Field(
        50,
        ge=1,
        le=100_000,
        description="Entries replayed per batch. A round goes on with the next batch while every "
        "record of the last one was delivered (a recovered Kafka drains the store quickly).",
    )
    timeout: Duration = Field(
        30.0, description="How long one batch waits for Kafka's acknowledgements; unacknowledged = failed."
    )
    min_entry_age: Duration = Field(120.0, description="Entries younger than this are not replayed.")


class DispatcherDLQConfig(Strict):
    enabled: bool = Field(
        True,
        description="The local dead-letter store: records that cannot be delivered (oversize, rejected "
        "permanently with no DLQ topic, timed out with send_on_timeout, overflow) are parked here "
        "durably (fsync before they count as acknowledged) and replayed later. Disabled: such records "
        "are retried and their lines stay unacknowledged; nothing is dropped.",
    )
    directory: str = Field("./data/dlq", description="Directory of the local DLQ store.")
    max_size_mb: int = Field(100, ge=1, description="Largest total size of the store's segment files (MiB).")
    max_files: int = Field(
        10,
        ge=1,
        description="Most segment files; a segment holds up to max_size_mb / max_files MiB of entries.",
    )
    retention_days: int = Field(
        7,
        ge=1,
        description="Entries parked longer ago than this are deleted (counted in "
        "dlq_entries_removed_total{reason='expired'}).",
    )
    when_full: Literal["backpressure", "drop_oldest"] = Field(
        "backpressure",
        description="When max_size_mb or max_files is reached: 'backpressure' refuses new entries, so "
        "the lines wait in the sources (nothing is dropped; /health turns unhealthy); 'drop_oldest' "
        "deletes the oldest segment to make room (those entries are lost, counted in "
        "dlq_entries_removed_total{reason='dropped_full'}).",
    )
    reprocessing_config: ReprocessingConfig = Field(default_factory=ReprocessingConfig)


class BackpressureConfig(Strict):
    enabled: bool = Field(
        True,
        description="React to the sink's queue filling up. Utilization = records the sink holds "
        "unacknowledged (producer queue, in flight, waiting for a retry) / queue_size, or their bytes "
        "/ queue_max_bytes, whichever is higher.",
    )
    queue_warning_threshold: float = Field(0.75, gt=0, le=1, description="Log a warning and count the event.")
    queue_critical_threshold: float = Field(
        0.90,
        gt=0,
        le=1,
        description="Slow the sources down: from this level on the sources are held (files stay on "
        "disk, TCP syslog is slowed, HTTP ingest answers 429) until there is room; lines already "
        "queued in the dispatcher are still produced, up to the emergency level.",
    )
    queue_emergency_threshold: float = Field(
        0.95,
        gt=0,
        le=1,
        description="A chunk of lines (one read of a file, or a few of over-long lines: at most "
        "files_config.read_buffer_bytes of text) is "
        "produced only if the queue stays within this level with it, or is empty; otherwise it "
        "waits. If the sink is also stalled (nothing acknowledged for 'timeout'), the waiting lines "
        "overflow to the local DLQ (reason 'backpressure'), are acknowledged, and are replayed once "
        "Kafka recovers. A sink that is merely saturated (acknowledgements keep coming) never "
        "overflows. 1.0 turns the overflow off: lines wait at the queue's capacity.",
    )
    timeout_escalation: bool = Field(
        True,
        description="Once the sink has acknowledged nothing for its 'timeout' while lines waited "
        "(stalled), lines held below the emergency level (sources held at the critical level, or "
        "lines waiting for an open circuit breaker) overflow to the DLQ as well, at once and until "
        "it acknowledges again (also while its breaker waits to probe a server that is back), so a "
        "long outage cannot hold the sources until rotated files are deleted. For an outage to "
        "hold every line in order, with nothing in the DLQ, set this to false, "
        "queue_emergency_threshold to 1.0 and dlq_config.send_on_timeout to false "
        "(files must then outlive the outage).",
    )

    @model_validator(mode="after")
    def _order(self) -> BackpressureConfig:
        if not (
            self.queue_warning_threshold <= self.queue_critical_threshold <= self.queue_emergency_threshold
        ):
            raise ValueError(
                "thresholds must satisfy queue_warning_threshold <= queue_critical_threshold "
                "<= queue_emergency_threshold"
            )
        return self


class CircuitBreakerConfig(Strict):
    enabled: bool = Field(True, description="Stop sending while Kafka keeps failing.")
    failure_threshold: int = Field(
        10,
        ge=1,
        description="Consecutive failures that open the breaker. A failure is a chunk of records "
        "whose delivery failed with a retriable error or timed out, or one second during which no "
        "broker was reachable while records waited. A delivered chunk resets the count.",
    )
    success_threshold: int = Field(
        2, ge=1, description="Successful trial calls in half-open state that close the breaker."
    )
    timeout: Duration = Field(
        60.0, description="How long the breaker stays open before it lets trial calls through (half-open)."
    )
    half_open_max_calls: int = Field(
        10,
        ge=1,
        description=(
            "Most trial calls while half-open: chunks, retried or replayed records, or, while the "
            "sink has nothing to send, a metadata request once a second."
        ),
    )
    open_action: Literal["wait", "dlq"] = Field(
        "wait",
        description="What happens to new lines while the breaker is open: 'wait' holds them in the "
        "sources (backpressure; see backpressure_config.timeout_escalation), 'dlq' parks them in the "
        "local DLQ at once, to be replayed when Kafka recovers. Never dropped.",
    )

    @model_validator(mode="after")
    def _check(self) -> CircuitBreakerConfig:
        if self.success_threshold > self.half_open_max_calls:
            raise ValueError(
                f"success_threshold ({self.success_threshold}) cannot exceed half_open_max_calls "
                f"({self.half_open_max_calls}): the breaker could never close"
            )
        return self
