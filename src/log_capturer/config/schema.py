"""The configuration schema: every key a user can write in ``config.yaml``.

Each model rejects unknown keys, and each field's description is the user
documentation (``docs/configuration.md`` is checked against it by a test).
Durations accept ``"250ms"``, ``"5s"``, ``"2m"``, ``"1h"``, ``"7d"`` or a number
of seconds.

This module holds the agent's own sections (``app``, ``server``, ``metrics``,
``positions``) and puts the whole file together: the dispatcher's and
processing's sections come from their packages, and every source's and sink's
from the component registry (:mod:`log_capturer.registry`), each model living
beside its component. The models are re-exported here for the code that reads
a config as a whole.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from log_capturer.config.base import Duration, Port, Regex, Strict, parse_duration
from log_capturer.pipeline.config import DispatcherConfig, RouteConfig
from log_capturer.processing.config import FileMultilineConfig, MultilineConfig, ProcessingConfig
from log_capturer.registry import Sinks, Sources
from log_capturer.reliability.config import (
    BackpressureConfig,
    CircuitBreakerConfig,
    DispatcherDLQConfig,
    ReprocessingConfig,
)
from log_capturer.sinks.kafka.config import (
    COMPRESSION_LEVELS,
    AuthConfig,
    KafkaDLQConfig,
    KafkaSinkConfig,
    PartitioningConfig,
    PriorityRoutingConfig,
)
from log_capturer.sinks.tls import TLSConfig
from log_capturer.sources.containers.config import ContainerMonitorConfig, KubernetesConfig
from log_capturer.sources.file.config import FilesConfig
from log_capturer.sources.http.config import HttpIngestConfig
from log_capturer.sources.stdin.config import StdinConfig
from log_capturer.sources.syslog.config import SyslogConfig, SyslogTCPConfig, SyslogUDPConfig

__all__ = [
    "COMPRESSION_LEVELS",
    "AppConfig",
    "AuthConfig",
    "BackpressureConfig",
    "CircuitBreakerConfig",
    "Config",
    "ContainerMonitorConfig",
    "DispatcherConfig",
    "DispatcherDLQConfig",
    "Duration",
    "FileMultilineConfig",
    "FilesConfig",
    "HttpIngestConfig",
    "KafkaDLQConfig",
    "KafkaSinkConfig",
    "KubernetesConfig",
    "MetricsConfig",
    "MultilineConfig",
    "PartitioningConfig",
    "Port",
    "PositionsConfig",
    "PriorityRoutingConfig",
    "ProcessingConfig",
    "Regex",
    "ReprocessingConfig",
    "ServerConfig",
    "SinksConfig",
    "StdinConfig",
    "Strict",
    "SyslogConfig",
    "SyslogTCPConfig",
    "SyslogUDPConfig",
    "TLSConfig",
    "parse_duration",
]

#: The ``sinks`` section: one subsection per registered sink.
SinksConfig = Sinks


# --- app, server, metrics -------------------------------------------------------------------


class AppConfig(Strict):
    name: str = Field("ssw-logs-capture", description="Service name used in the agent's own logs.")
    version: str | None = Field(
        None,
        description="Deprecated and ignored; accepted so that configs of the original agent (which set "
        "'v0.0.2') still load. /health (`version` and `app.version`), the agent's logs and "
        "`log-capturer version` report the installed package's version. When set, `validate` and "
        "`run` warn that it is ignored.",
    )
    environment: str = Field("production", description="Environment label for the agent's own logs.")
    log_level: Literal["debug", "info", "warn", "warning", "error"] = Field(
        "info", description="Level of the agent's own logs."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="Format of the agent's own logs on stderr: one JSON object per line, or text."
    )
    log_file: str = Field("", description="Also write the agent's own logs to this file ('' = stderr only).")
    log_stream: Literal["stderr", "stdout"] = Field(
        "stderr",
        description="Where the agent writes its own logs. stdout suits containers, where "
        "`docker logs NAME | grep ...` pipes only stdout (the image's config sets it). With "
        "app.workers > 1 the workers always write to stderr (their stdout talks to the supervisor).",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Agent processes (`log-capturer run --workers N` overrides). 1: one process. "
        "N > 1: a supervisor starts N worker processes, each a full agent with its own dispatcher "
        "and Kafka producer. Files and containers are split between them by a hash of their source_id "
        "(BLAKE2b) modulo N, "
        "so one file and its rotations stay in one worker (order and checkpoints are kept); "
        "syslog, HTTP ingest and DLQ reprocessing run in worker 0; forward and OTLP listen in every "
        "worker on their one port (their every_worker); with the kafka source each "
        "worker is a member of its consumer group (the partitions are spread over the workers); "
        "queue sizes (dispatcher and "
        "sinks.kafka) are the whole agent's and each worker gets 1/N of them; the supervisor "
        "serves server.port and metrics.port for the whole agent and restarts a worker that dies. "
        "See the README, 'Multi-process mode'.",
    )


class ServerConfig(Strict):
    enabled: bool = Field(True, description="Serve the API (/health, /stats, /positions).")
    host: str = Field("0.0.0.0", description="Address the API server binds to.")
    port: Port = Field(8401, description="API server port.")
    stalled_after: Duration = Field(
        30.0,
        description="GET /health reports the 'delivery' check degraded (503) when lines wait for "
        "Kafka's acknowledgement and none was acknowledged for this long.",
    )


class MetricsConfig(Strict):
    enabled: bool = Field(True, description="Serve Prometheus metrics.")
    host: str = Field("0.0.0.0", description="Address the metrics server binds to.")
    port: Port = Field(8001, description="Metrics server port; also serves a plain GET /health -> OK.")
    path: str = Field("/metrics", pattern=r"^/", description="Path of the Prometheus endpoint.")
    file_lag_series_limit: int = Field(
        100,
        ge=0,
        le=100_000,
        description="Most files exported one by one in file_lag_bytes{source_type,path} (those with "
        "the largest lag), which bounds the metric's series; files_lag_bytes always sums every file. "
        "0 = the sum only.",
    )


# --- positions ------------------------------------------------------------------------------


class PositionsConfig(Strict):
    enabled: bool = Field(True, description="Remember read positions across restarts.")
    directory: str = Field("./data/positions", description="Directory of the position files.")
    write_delay: Duration = Field(
        0.3,
        ge=0.01,
        le=60,
        description="The longest an acknowledged position waits to be written: when deliveries "
        "are acknowledged, the positions file is written within this delay, at most once per "
        "delay however many acknowledgements came in (on a thread of its own, so reading does not "
        "wait for the disk). It bounds what a crash (kill -9, power loss) sends again: about this "
        "much of input plus what Kafka had accepted but not acknowledged yet. Lower it for fewer "
        "duplicates, raise it for fewer disk writes.",
    )
    flush_interval: Duration = Field(
        10.0,
        description="How often the positions file is written even when no acknowledgement moved a "
        "position (rotated files renamed, released files); always on shutdown. Positions moved by "
        "acknowledgements are written within write_delay.",
    )


# --- the whole file ---------------------------------------------------------------------------


class _Head(Strict):
    app: AppConfig = Field(default_factory=AppConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)


class _Tail(Strict):
    dispatcher: DispatcherConfig = Field(default_factory=DispatcherConfig)
    sinks: Sinks = Field(default_factory=Sinks)
    routes: list[RouteConfig] = Field(
        default_factory=list,
        description="Which sources go to which sinks. The first route that matches a source "
        "decides; a source no route matches goes to every enabled sink (also when there are no "
        "routes). A line is acknowledged to its source once every sink it went to delivered it or "
        "parked it in the local DLQ. Example: [{source_types: [syslog], sinks: [local_file]}].",
    )
    positions: PositionsConfig = Field(default_factory=PositionsConfig)
    processing: ProcessingConfig = Field(default_factory=ProcessingConfig)


class Config(_Tail, Sources, _Head):
    """The whole file: the agent's sections, then the sources (:class:`Sources`), then the
    dispatcher, the sinks, positions and processing (fields are laid out from the last base to
    the first, which keeps that order in docs/configuration.md)."""

    def ignored_settings(self) -> list[str]:
        """Settings accepted for compatibility that do nothing, each with what to do instead (warnings
        of ``validate`` and ``run``: not errors, so that an old config still starts the agent)."""
        notes = []
        if self.app.version is not None:
            notes.append(
                f"app.version ({self.app.version!r}) is deprecated and ignored: /health reports the "
                "agent's own version (log-capturer version); remove the key"
            )
        return notes

    def pipeline_names(self) -> dict[str, str]:
        """Every pipeline the config refers to: config key -> pipeline name."""
        refs = {
            f"{key}.pipeline": str(getattr(getattr(self, key), "pipeline", ""))
            for key in Sources.model_fields
        }
        refs.update(
            {
                f"processing.source_type_pipelines.{t}": n
                for t, n in self.processing.source_type_pipelines.items()
            }
        )
        return {k: v for k, v in refs.items() if v}

    @model_validator(mode="after")
    def _routes_name_enabled_sinks(self) -> Config:
        """Every sink a route names is a sink, and is enabled."""
        for i, route in enumerate(self.routes):
            for key in route.sinks:
                if key not in Sinks.model_fields:
                    raise ValueError(
                        f"routes[{i}].sinks: no sink named {key!r}; the sinks are "
                        f"{', '.join(Sinks.model_fields)}"
                    )
                if not getattr(getattr(self.sinks, key), "enabled", False):
                    raise ValueError(
                        f"routes[{i}].sinks: sink {key!r} is not enabled; set sinks.{key}.enabled: "
                        "true or remove it from the route"
                    )
        return self

    @model_validator(mode="after")
    def _one_writer_per_file(self) -> Config:
        """With several worker processes, each writes local files of its own."""
        lf = self.sinks.local_file
        if self.app.workers > 1 and lf.enabled and "{worker}" not in lf.filename_pattern:
            raise ValueError(
                f"sinks.local_file.filename_pattern: with app.workers: {self.app.workers} each worker "
                "writes its own files; put {worker} in the pattern, e.g. 'logs-{date}-{worker}.log'"
            )
        return self

    @model_validator(mode="after")
    def _exactly_once_scope(self) -> Config:
        """``sinks.kafka.delivery: exactly_once`` covers the file source, Docker's container logs
        and Kafka (one process or several workers: each worker has its own transactional id)."""
        kafka = self.sinks.kafka
        if not kafka.enabled or kafka.delivery != "exactly_once":
            return self
        what = "sinks.kafka.delivery: exactly_once"
        covered = ("files_config", "container_monitor")
        others = [
            k
            for k in Sources.model_fields
            if k not in covered and getattr(getattr(self, k), "enabled", False)
        ]
        if others:
            raise ValueError(
                f"{what} covers files and Docker's container logs only for now (positions committed "
                "with the lines); "
                + ", ".join(f"set {k}.enabled: false" for k in others)
                + " or use delivery: at_least_once"
            )
        if not (self.files_config.enabled or self.container_monitor.enabled):
            raise ValueError(
                f"{what} needs the file source or Docker's container logs; set files_config.enabled: "
                "true (or container_monitor.enabled: true)"
            )
        sinks = [
            k
            for k in Sinks.model_fields
            if k != "kafka" and getattr(getattr(self.sinks, k), "enabled", False)
        ]
        if sinks:
            raise ValueError(
                f"{what} needs Kafka as the only sink (a line's position is committed with its "
                "Kafka transaction); " + ", ".join(f"set sinks.{k}.enabled: false" for k in sinks)
            )
        return self

    @model_validator(mode="after")
    def _sections_agree(self) -> Config:
        """A source section may check itself against the rest of the file (``check_with``)."""
        for key in Sources.model_fields:
            check = getattr(getattr(self, key), "check_with", None)
            if check is not None:
                check(self)
        return self

    @model_validator(mode="after")
    def _pipelines_need_processing(self) -> Config:
        if not self.processing.enabled and self.pipeline_names():
            key = next(iter(self.pipeline_names()))
            raise ValueError(
                f"{key} names a pipeline but processing is disabled; set processing.enabled: true "
                "and processing.pipelines_file"
            )
        return self
