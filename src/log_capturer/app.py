"""Wiring: build the components from a config, start them in order, stop them with a drain.

Start order: sinks -> dispatcher -> sources -> HTTP. Stop order: sources stop
reading (files, syslog, stdin) -> the dispatcher hands over what is queued -> sinks wait for delivery
reports (up to ``dispatcher.drain_timeout`` in all) -> acknowledged positions
are saved. Lines not acknowledged by then are not checkpointed, so a restart
reads them again: nothing is lost, at worst re-sent.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from log_capturer import __version__
from log_capturer.config.loader import config_warnings
from log_capturer.config.paths import path_problems
from log_capturer.config.schema import Config, ProcessingConfig, TLSConfig
from log_capturer.config.secrets import SecretScrubber, masked_config, secret_values
from log_capturer.memory import tune_malloc
from log_capturer.observability.health import (
    Check,
    Component,
    ComponentHealthCollector,
    StallDetector,
    queue_check,
    worst,
)
from log_capturer.observability.lag import FileLag, FileLagCollector, file_lags
from log_capturer.observability.metrics import Metrics
from log_capturer.observability.server import HttpServers, build_api_app, build_metrics_app
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.processing import Analyzer
from log_capturer.processing.pipelines import Pipeline, PipelineError, load_pipelines
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.reliability.dlq.reprocess import Reprocessor
from log_capturer.sinks.base import Sink, SinkHealth, utc_now_iso
from log_capturer.sinks.kafka.config import start_problems, tls_file_problems
from log_capturer.sinks.kafka.sink import KafkaSink, SinkStartError
from log_capturer.sources.containers.source import ContainerSource
from log_capturer.sources.file.source import FileSource
from log_capturer.sources.http import PATH as INGEST_PATH
from log_capturer.sources.http import HttpIngest
from log_capturer.sources.stdin import StdinSource
from log_capturer.sources.syslog import SyslogSource
from log_capturer.sources.syslog.tls import TLSSetupError, tls_problems
from log_capturer.workers.shard import Shard

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


#: Counters of a sink's /stats whose sum grows with every line it acknowledged (any way).
ACKNOWLEDGED_STATS = ("delivered", "parked", "sent_to_dlq_topic")


class AgentError(RuntimeError):
    """The agent cannot start with this configuration; the message says what to change."""


def require_sink(config: Config) -> None:
    """The agent ships somewhere: at least one sink is enabled."""
    if not config.sinks.kafka.enabled:
        raise AgentError("no sink is enabled: set sinks.kafka.enabled: true")


def read_pipelines(path: str, metrics: Metrics | None = None) -> dict[str, Pipeline]:
    """The pipelines of ``processing.pipelines_file``; AgentError names the key and every problem."""
    try:
        return load_pipelines(path, metrics)
    except PipelineError as exc:
        raise AgentError(f"processing.pipelines_file: {exc}") from None


def build_pipelines(config: Config, metrics: Metrics | None = None) -> dict[str, Pipeline]:
    """Load ``processing.pipelines_file`` and check every pipeline the config names exists."""
    if not config.processing.enabled:
        return {}
    path = config.processing.pipelines_file
    pipelines = read_pipelines(path, metrics)
    missing = [
        f"{key}: no pipeline named {name!r} in {path}; defined: {', '.join(sorted(pipelines))}"
        for key, name in config.pipeline_names().items()
        if name not in pipelines
    ]
    if missing:
        raise AgentError("\n".join(missing))
    return pipelines


def preflight(config: Config) -> list[str]:
    """Every reason the agent would refuse ``config`` at start that needs no network, one each.

    ``log-capturer validate`` reports them; the agent runs the same checks as it starts
    (:func:`require_sink`, :func:`build_pipelines`, in ``KafkaSink.start`` the TLS files and
    the producer's configuration, and in ``run`` the log file and positions directory). Whether
    a broker answers, or a port is free, is not checked here.
    """
    problems: list[str] = []
    checks: tuple[Callable[[Config], object], ...] = (require_sink, build_pipelines)
    for check in checks:
        try:
            check(config)
        except AgentError as exc:
            problems.append(str(exc))
    if config.sinks.kafka.enabled:
        problems += start_problems(config.sinks.kafka)
    problems += tls_problems(config.syslog)
    return problems + path_problems(config)


def raw_preflight(data: Mapping[str, Any]) -> list[str]:
    """The checks of :func:`preflight` that can run on a config that failed validation.

    ``data`` is the file's mapping. The pipelines file and the TLS files are checked when the
    sections naming them are valid, so ``validate`` reports their problems in the same run as
    the config's.
    """
    problems: list[str] = []
    processing = _section(ProcessingConfig, data, "processing")
    if processing is not None and processing.enabled:
        try:
            read_pipelines(processing.pipelines_file)
        except AgentError as exc:
            problems.append(str(exc))
    sinks = data.get("sinks")
    kafka = sinks.get("kafka") if isinstance(sinks, dict) else None
    if isinstance(kafka, dict) and kafka.get("enabled") is True:
        tls = _section(TLSConfig, kafka, "tls")
        if tls is not None:
            problems += tls_file_problems(tls)
    return problems


def _section(model: type[M], data: Mapping[str, Any], key: str) -> M | None:
    """``data[key]`` validated as ``model``, or None when it is not valid."""
    try:
        return model.model_validate(data.get(key) or {})
    except ValidationError:
        return None


def pipelines_by_source_type(config: Config) -> dict[str, str]:
    """source_type -> pipeline for sources that do not name theirs on each chunk (files, containers)."""
    by_type = dict(config.processing.source_type_pipelines)
    if config.files_config.pipeline:
        by_type["file"] = config.files_config.pipeline
    return by_type


class Agent:
    def __init__(self, config: Config, worker: tuple[int, int] | None = None) -> None:
        """``worker``: (index, count) when this agent is one worker of a multi-process agent."""
        require_sink(config)
        self.config = config
        self.worker = worker
        self.metrics = Metrics()
        self.started_at = time.time()
        dlq_cfg = config.dispatcher.dlq_config
        self.dlq = DeadLetterStore(dlq_cfg, self.metrics) if dlq_cfg.enabled else None
        self.sinks: list[Sink] = []
        kcfg = config.sinks.kafka
        if kcfg.enabled:
            self.kafka: KafkaSink | None = KafkaSink(kcfg, self.metrics, self.dlq)
            self.sinks.append(self.kafka)
        else:
            self.kafka = None
        self.reprocessor: Reprocessor | None = None
        if self.dlq is not None and self.kafka is not None:
            self.reprocessor = Reprocessor(self.dlq, dlq_cfg.reprocessing_config, self.kafka, self.metrics)
        key_field = kcfg.partitioning.key_field if kcfg.partitioning.enabled else None
        self.pipelines = build_pipelines(config, self.metrics)
        analyzer = Analyzer(key_field, self.pipelines, pipelines_by_source_type(config))
        self.dispatcher = Dispatcher(config.dispatcher, self.sinks, analyzer, self.metrics)
        self.file_source: FileSource | None = None
        fcfg = config.files_config
        if fcfg.enabled and fcfg.watch_directories:
            self.file_source = FileSource(
                fcfg, config.positions, self.dispatcher, self.metrics, self._shard("files")
            )
        self.syslog: SyslogSource | None = None
        if config.syslog.enabled:
            self.syslog = SyslogSource(config.syslog, self.dispatcher, self.metrics)
        self.stdin: StdinSource | None = None
        if config.stdin.enabled:
            self.stdin = StdinSource(config.stdin, self.dispatcher, self.metrics)
        self.ingest: HttpIngest | None = None
        if config.http_ingest.enabled and config.server.enabled:
            self.ingest = HttpIngest(config.http_ingest, self.dispatcher, self.metrics, self.dlq)
        self.container_source: ContainerSource | None = None
        if config.container_monitor.enabled or config.kubernetes.enabled:
            self.container_source = ContainerSource(
                config.container_monitor,
                config.kubernetes,
                fcfg,
                config.positions,
                self.dispatcher,
                self.metrics,
                self._shard("containers"),
            )
        self.stalls = StallDetector(config.server.stalled_after)
        self.metrics.registry.register(ComponentHealthCollector(self.components))
        self.metrics.registry.register(FileLagCollector(self.file_lags, config.metrics.file_lag_series_limit))
        #: Masks every secret the agent knows in API answers (see config.secrets).
        self.scrubber = SecretScrubber(secret_values(config))
        self.http = HttpServers()
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    def _shard(self, kind: str) -> Shard | None:
        if self.worker is None:
            return None
        return Shard(*self.worker, self.config.positions.directory, kind)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        for text in config_warnings(self.config):
            log.warning(text)
        malloc = tune_malloc()
        for sink in self.sinks:
            try:
                sink.start()
            except SinkStartError as exc:
                raise AgentError(str(exc)) from exc
        self.dispatcher.start()
        if self.reprocessor is not None and self.config.dispatcher.dlq_config.reprocessing_config.enabled:
            self.reprocessor.start()
        if self.file_source is not None:
            self.file_source.start()
        if self.container_source is not None:
            self.container_source.start()
        cfg = self.config
        if self.syslog is not None:
            try:
                self.syslog.start()
            except TLSSetupError as exc:
                self.stop()
                raise AgentError(str(exc)) from exc
            except OSError as exc:
                self.stop()
                raise AgentError(
                    f"cannot listen for syslog: {exc.strerror or exc}; change syslog.udp.port / "
                    "syslog.tcp.port (or the host)"
                ) from exc
        if cfg.metrics.enabled:
            self.http.add(
                build_metrics_app(self.metrics.registry, cfg.metrics.path, self.scrubber.data),
                cfg.metrics.host,
                cfg.metrics.port,
            )
        if cfg.server.enabled:
            self.http.add(
                build_api_app(
                    self.health,
                    self.stats,
                    self.positions,
                    (INGEST_PATH, self.ingest.handle) if self.ingest is not None else None,
                    dlq_stats=self.dlq_stats,
                    dlq_reprocess=self.dlq_reprocess,
                    scrub=self.scrubber.data,
                ),
                cfg.server.host,
                cfg.server.port,
            )
        if cfg.metrics.enabled or cfg.server.enabled:
            try:
                self.http.start()
            except OSError as exc:
                self.stop()
                raise AgentError(
                    f"cannot listen for HTTP: {exc.strerror}; change server.port or metrics.port"
                ) from exc
        if self.stdin is not None:
            self.stdin.start()
        log.debug("effective configuration", extra={"config": self.config_dump()})
        log.info(
            "agent started",
            extra={
                "version": __version__,
                "sinks": [s.name for s in self.sinks],
                "files": len(self.file_source.files()) if self.file_source else 0,
                "syslog": [f"{t}://{h}:{p}" for t, h, p in self.syslog.bound] if self.syslog else [],
                "stdin": self.stdin is not None,
                "http_ingest": self.ingest is not None,
                "pipelines": sorted(self.pipelines),
                "malloc": malloc,
            },
        )

    @property
    def input_finished(self) -> bool:
        """True once standard input ended and every line of it was queued (stdin runs only)."""
        return self.stdin is not None and self.stdin.finished.is_set()

    def stop(self) -> None:
        """Graceful stop: drain within ``dispatcher.drain_timeout``, then checkpoint what was acked."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            deadline = time.monotonic() + self.config.dispatcher.drain_timeout
            log.info(
                "stopping: draining in-flight lines",
                extra={"drain_timeout_s": self.config.dispatcher.drain_timeout},
            )
            if self.file_source is not None:
                self.file_source.stop()
            if self.syslog is not None:
                self.syslog.stop(max(0.1, deadline - time.monotonic()))
            if self.stdin is not None:
                self.stdin.stop()
            if self.container_source is not None:
                self.container_source.stop()
            if not self.dispatcher.close(max(0.1, deadline - time.monotonic())):
                log.warning("dispatcher did not hand over every queued line before the deadline")
            if self.reprocessor is not None:
                self.reprocessor.stop()
            for sink in self.sinks:
                sink.stop(max(0.1, deadline - time.monotonic()))
            if self.file_source is not None:
                self.file_source.save_positions()
                self.file_source.close()
            if self.container_source is not None:
                self.container_source.save_positions()
                self.container_source.close()
            self.http.stop()
            self._stopped.set()
            log.info("stopped", extra={"lines_in": self.dispatcher.lines_in})

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    # -- reporting -----------------------------------------------------------------------------
    def sink_health(self) -> list[SinkHealth]:
        return [s.health() for s in self.sinks]

    def health_checks(self) -> dict[str, Check]:
        """The agent-wide checks of /health, by name; each has a ``status``."""
        q = self.dispatcher.queue
        checks = {
            "queue": {
                **queue_check(q.utilization, q.size, q.capacity),
                "bytes": q.text_bytes,
                "max_bytes": q.max_bytes,
            },
            "dlq": self._dlq_check(),
            "dispatcher": self.dispatcher.check(),
        }
        delivery = [self._delivery_check(s) for s in self.sinks]
        checks["delivery"] = {"status": worst(c["status"] for c in delivery), "sinks": delivery}
        return checks

    def _delivery_check(self, sink: Sink) -> Check:
        st = sink.stats()
        outstanding = _int(st.get("outstanding"))
        acknowledged = sum(_int(st.get(k)) for k in ACKNOWLEDGED_STATS)
        return {"name": sink.name, **self.stalls.check(sink.name, outstanding, acknowledged)}

    def health(self) -> dict[str, Any]:
        sinks = self.sink_health()
        sources = self._source_health()
        checks = self.health_checks()
        overall = worst(
            [s.status for s in sinks]
            + [s["status"] for s in sources]
            + [c["status"] for c in checks.values()]
        )
        uptime = time.time() - self.started_at
        app = self.config.app
        return {
            "status": overall,
            "timestamp": utc_now_iso(),
            "version": __version__,
            "uptime": _human(uptime),
            "uptime_seconds": round(uptime, 3),
            "app": {"name": app.name, "version": __version__, "environment": app.environment},
            "services": {
                "sinks": [s.as_dict() for s in sinks],
                "sources": sources,
            },
            "checks": checks,
        }

    def components(self) -> list[Component]:
        """Every sink, source and check with its status, for ``component_health``."""
        out: list[Component] = [("sink", h.name, h.status) for h in self.sink_health()]
        out += [("source", s["name"], s["status"]) for s in self._source_health()]
        out += [("check", name, c["status"]) for name, c in self.health_checks().items()]
        return out

    def file_lags(self) -> list[FileLag]:
        """Unacknowledged bytes of every followed file (live and rotated), for the lag metrics."""
        lags: list[FileLag] = []
        for engine in (self.file_source, self.container_source):
            if engine is not None:
                lags += file_lags(engine.files(live=True) + engine.files(live=False))
        return lags

    def config_dump(self) -> dict[str, Any]:
        """The effective configuration (file, ``${VAR}``, environment overrides), secrets masked."""
        return masked_config(self.config)

    def _dlq_check(self) -> dict[str, object]:
        """The local DLQ can take entries: unhealthy while writes fail (unwritable, full)."""
        store = self.dlq
        if store is None:
            return {"status": "healthy", "enabled": False}
        if store.last_error:
            return {
                "status": "unhealthy",
                "enabled": True,
                "full": store.full,
                "message": store.last_error,
                "directory": str(store.directory),
            }
        return {
            "status": "healthy",
            "enabled": True,
            "message": "OK",
            "directory": str(store.directory),
            "entries_written_since_start": store.entries_written,
        }

    def dlq_stats(self) -> dict[str, Any]:
        """``GET /dlq/stats``: the local store's counts, and the reprocessor's."""
        if self.dlq is None:
            return {"enabled": False}
        out: dict[str, Any] = {"enabled": True, **self.dlq.stats()}
        kafka = self.kafka
        if kafka is not None:
            out["kafka_topic"] = {
                "topic": kafka.config.dlq_config.topic if kafka.config.dlq_config.enabled else None,
                "sent_since_start": kafka.sent_to_dlq_topic,
            }
        rp = self.reprocessor
        out["reprocessing"] = (
            rp.status()
            if rp is not None and self.config.dispatcher.dlq_config.reprocessing_config.enabled
            else {"enabled": False}
        )
        return out

    def dlq_reprocess(self, everything: bool) -> tuple[int, dict[str, Any]]:
        """``POST /dlq/reprocess``: one reprocessing round now (HTTP status, summary)."""
        if self.reprocessor is None:
            return 409, {"status": "unavailable", "reason": "the local DLQ is disabled"}
        summary = self.reprocessor.run_once(everything=everything)
        code = {"completed": 200, "skipped": 409}.get(str(summary.get("status")), 503)
        return code, summary

    def _source_health(self) -> list[dict[str, Any]]:
        """Each source: its supervisor's state (degraded while a crashed thread is restarted, with
        the error and the restarts; see sources.supervise) and its figures."""
        out = []
        if self.file_source is not None:
            out.append(
                {
                    "name": "file_source",
                    **self.file_source.health(),
                    "files": len(self.file_source.files()),
                    "rotated_files_draining": len(self.file_source.files(live=False)),
                    "open_files": self.file_source.open_files,
                }
            )
        cs = self.container_source
        if cs is not None:
            out.append(
                {
                    "name": "container_source",
                    **cs.health(),
                    "containers": len({tf.origin.source_id for tf in cs.files()}),
                    "files": len(cs.files()),
                    "docker_events_connected": cs.events_connected,
                }
            )
        if self.syslog is not None:
            out.append(
                {
                    "name": "syslog_source",
                    **self.syslog.health(),
                    "listeners": [f"{t}://{h}:{p}" for t, h, p in self.syslog.bound],
                    "tcp_connections": len(self.syslog.connections),
                }
            )
        if self.stdin is not None:
            out.append(
                {
                    "name": "stdin_source",
                    **self.stdin.health(),
                    "finished": self.stdin.finished.is_set(),
                }
            )
        if self.ingest is not None:
            out.append({"name": "http_ingest", **self.ingest.health(), "path": INGEST_PATH})
        return out

    def stats(self) -> dict[str, Any]:
        fs = self.file_source
        return {
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "pid": os.getpid(),
            "dispatcher": {
                "lines_in": self.dispatcher.lines_in,
                "lines_dispatched": self.dispatcher.lines_dispatched,
                "queue_size": self.dispatcher.queue.size,
                "queue_capacity": self.dispatcher.queue.capacity,
                "queue_utilization": round(self.dispatcher.queue.utilization, 4),
            },
            "sinks": {s.name: s.stats() for s in self.sinks},
            "files": {
                "monitored": len(fs.files()) if fs else 0,
                "rotated_draining": len(fs.files(live=False)) if fs else 0,
                "open_files": fs.open_files if fs else 0,
                "lines_read": fs.lines_read if fs else 0,
                "in_flight_lines": fs.in_flight() if fs else 0,
                "lag_bytes": fs.lag_bytes() if fs else {},
            },
            "containers": self._container_stats(),
            "dlq": {
                "entries_written": self.dlq.entries_written if self.dlq else 0,
                "last_error": self.dlq.last_error if self.dlq else "",
            },
            "syslog": {
                "received": self.syslog.messages_received if self.syslog else 0,
                "dropped": self.syslog.messages_dropped if self.syslog else 0,
                "tcp_connections": len(self.syslog.connections) if self.syslog else 0,
            },
            "stdin": {
                "lines_read": self.stdin.lines_read if self.stdin else 0,
                "unacknowledged": self.stdin.unacknowledged if self.stdin else 0,
                "finished": self.stdin.finished.is_set() if self.stdin else False,
            },
            "http_ingest": {
                "accepted": self.ingest.accepted if self.ingest else 0,
                "rejected": self.ingest.rejected if self.ingest else 0,
            },
            "pipelines": {
                name: {"step_failures": dict(p.failures), "redactions": dict(p.redactions)}
                for name, p in self.pipelines.items()
            },
        }

    def _container_stats(self) -> dict[str, Any]:
        cs = self.container_source
        if cs is None:
            return {}
        return {
            "monitored": len({tf.origin.source_id for tf in cs.files()}),
            "files": len(cs.files()),
            "open_files": cs.open_files,
            "lines_read": cs.lines_read,
            "in_flight_lines": cs.in_flight(),
            "docker_events_connected": cs.events_connected,
        }

    def positions(self) -> dict[str, Any]:
        return {
            "files": self.file_source.position_entries() if self.file_source else {},
            "containers": self.container_source.container_entries() if self.container_source else {},
        }


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _human(seconds: float) -> str:
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m}m{sec}s" if h else (f"{m}m{sec}s" if m else f"{sec}s")
