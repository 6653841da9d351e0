"""The ``dispatcher`` section: the queue between the sources and the sinks, and its workers."""

from __future__ import annotations

from pydantic import Field

from log_capturer.config.base import Duration, Strict
from log_capturer.reliability.config import DispatcherDLQConfig


class DispatcherConfig(Strict):
    queue_size: int = Field(
        50000, ge=1, description="Capacity of the dispatcher queue, in lines; sources wait when it is full."
    )
    queue_max_bytes: int = Field(
        32 << 20,
        ge=1 << 20,
        description="Capacity of the dispatcher queue in bytes of line text; sources also wait when "
        "it is reached (bounds memory when lines are long: with 8 KiB lines at full speed, 32 MiB "
        "kept one process under 200 MiB at the rate 64 MiB gave).",
    )
    worker_count: int = Field(
        1,
        ge=1,
        le=64,
        description="Dispatch threads. Any thread takes any source's lines, but one source is "
        "served by one thread at a time, so its lines keep their order. The work is bound by the "
        "interpreter lock: on the 2-core test machine a second thread shipped no more lines and "
        "held a second batch in memory. For more cores use app.workers (processes).",
    )
    batch_size: int = Field(500, ge=1, description="Most lines handed to the sinks in one call.")
    batch_timeout: Duration = Field(
        10.0, description="Longest a partial batch waits for more lines (see flush_on_idle)."
    )
    flush_on_idle: bool = Field(
        True,
        description="Hand a partial batch to the sinks as soon as the queue is empty instead of "
        "waiting up to batch_timeout. Keeps latency low at low rates.",
    )
    max_retries: int = Field(
        3,
        ge=0,
        description="Retries of a sink call that raised (a bug, not a delivery problem: sinks retry "
        "deliveries themselves) before its lines are parked in the DLQ with reason all_sinks_failed.",
    )
    retry_base_delay: Duration = Field(
        5.0, description="Wait before the first such retry; doubles per attempt."
    )
    drain_timeout: Duration = Field(
        30.0,
        description="On shutdown, how long to wait for in-flight lines to be acknowledged. "
        "Lines not acknowledged by then are not checkpointed and are read again on restart.",
    )
    dlq_config: DispatcherDLQConfig = Field(default_factory=DispatcherDLQConfig)


class RouteConfig(Strict):
    """One route: the sources it matches, and the sinks their lines go to. Every condition given
    must hold; a route with none matches every source."""

    source_types: list[str] = Field(
        default_factory=list,
        description="Source types it matches (file, docker, syslog, api, stdin...); empty: any.",
    )
    source_ids: list[str] = Field(
        default_factory=list,
        description="Source ids it matches, shell-style patterns ('/var/log/audit/*'); empty: any.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels the source must have, with these values; empty: any."
    )
    sinks: list[str] = Field(
        min_length=1,
        description="Sinks its lines go to, by section name (kafka, local_file); each must be enabled.",
    )
