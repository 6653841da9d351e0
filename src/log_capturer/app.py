"""Wiring: build the components from a config, start them in order, stop them with a drain.

Start order: sinks -> dispatcher -> sources -> HTTP. Stop order: sources stop
reading -> the dispatcher hands over what is queued -> sinks wait for delivery
reports (up to ``dispatcher.drain_timeout`` in all) -> acknowledged positions
are saved. Lines not acknowledged by then are not checkpointed, so a restart
reads them again: nothing is lost, at worst re-sent.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from log_capturer import __version__
from log_capturer.config.schema import Config
from log_capturer.observability.metrics import Metrics
from log_capturer.observability.server import HttpServers, build_api_app, build_metrics_app
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.processing import Analyzer
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.sinks.base import Sink, SinkHealth, utc_now_iso
from log_capturer.sinks.kafka.sink import KafkaSink, SinkStartError
from log_capturer.sources.file.source import FileSource

log = logging.getLogger(__name__)


class AgentError(RuntimeError):
    """The agent cannot start with this configuration; the message says what to change."""


class Agent:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.started_at = time.time()
        dlq_cfg = config.dispatcher.dlq_config
        self.dlq = DeadLetterStore(dlq_cfg) if dlq_cfg.enabled else None
        self.sinks: list[Sink] = []
        kcfg = config.sinks.kafka
        if kcfg.enabled:
            self.kafka: KafkaSink | None = KafkaSink(kcfg, self.metrics, self.dlq)
            self.sinks.append(self.kafka)
        else:
            self.kafka = None
        if not self.sinks:
            raise AgentError("no sink is enabled: set sinks.kafka.enabled: true")
        key_field = kcfg.partitioning.key_field if kcfg.partitioning.enabled else None
        self.dispatcher = Dispatcher(config.dispatcher, self.sinks, Analyzer(key_field), self.metrics)
        self.file_source: FileSource | None = None
        fcfg = config.files_config
        if fcfg.enabled and fcfg.watch_directories:
            self.file_source = FileSource(fcfg, config.positions, self.dispatcher, self.metrics)
        self.http = HttpServers()
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        for sink in self.sinks:
            try:
                sink.start()
            except SinkStartError as exc:
                raise AgentError(str(exc)) from exc
        self.dispatcher.start()
        if self.file_source is not None:
            self.file_source.start()
        cfg = self.config
        if cfg.metrics.enabled:
            self.http.add(
                build_metrics_app(self.metrics.registry, cfg.metrics.path), cfg.metrics.host, cfg.metrics.port
            )
        if cfg.server.enabled:
            self.http.add(
                build_api_app(self.health, self.stats, self.positions), cfg.server.host, cfg.server.port
            )
        if cfg.metrics.enabled or cfg.server.enabled:
            try:
                self.http.start()
            except OSError as exc:
                self.stop()
                raise AgentError(
                    f"cannot listen for HTTP: {exc.strerror}; change server.port or metrics.port"
                ) from exc
        log.info(
            "agent started",
            extra={
                "version": __version__,
                "sinks": [s.name for s in self.sinks],
                "files": len(self.file_source.files) if self.file_source else 0,
            },
        )

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
            if not self.dispatcher.close(max(0.1, deadline - time.monotonic())):
                log.warning("dispatcher did not hand over every queued line before the deadline")
            for sink in self.sinks:
                sink.stop(max(0.1, deadline - time.monotonic()))
            if self.file_source is not None:
                self.file_source.save_positions()
                self.file_source.close()
            self.http.stop()
            self._stopped.set()
            log.info("stopped", extra={"lines_in": self.dispatcher.lines_in})

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    # -- reporting -----------------------------------------------------------------------------
    def sink_health(self) -> list[SinkHealth]:
        return [s.health() for s in self.sinks]

    def health(self) -> dict[str, Any]:
        sinks = self.sink_health()
        util = self.dispatcher.queue.utilization
        queue_status = "healthy" if util < 0.9 else "degraded"
        statuses = [s.status for s in sinks] + [queue_status]
        overall = "healthy"
        if "unhealthy" in statuses:
            overall = "unhealthy"
        elif "degraded" in statuses:
            overall = "degraded"
        uptime = time.time() - self.started_at
        return {
            "status": overall,
            "timestamp": utc_now_iso(),
            "version": __version__,
            "uptime": _human(uptime),
            "uptime_seconds": round(uptime, 3),
            "services": {
                "sinks": [s.as_dict() for s in sinks],
                "sources": self._source_health(),
            },
            "checks": {
                "queue": {
                    "status": queue_status,
                    "utilization": round(util, 4),
                    "size": self.dispatcher.queue.size,
                    "capacity": self.dispatcher.queue.capacity,
                },
            },
        }

    def _source_health(self) -> list[dict[str, Any]]:
        out = []
        if self.file_source is not None:
            out.append(
                {
                    "name": "file_source",
                    "status": "healthy",
                    "files": len(self.file_source.files),
                    "rotated_files_draining": len(self.file_source.rotated),
                }
            )
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
                "monitored": len(fs.files) if fs else 0,
                "lines_read": fs.lines_read if fs else 0,
                "in_flight_lines": fs.in_flight() if fs else 0,
                "lag_bytes": fs.lag_bytes() if fs else {},
            },
            "dlq": {"entries_written": self.dlq.entries_written if self.dlq else 0},
        }

    def positions(self) -> dict[str, Any]:
        return {"files": self.file_source.position_entries() if self.file_source else {}}


def _human(seconds: float) -> str:
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m}m{sec}s" if h else (f"{m}m{sec}s" if m else f"{sec}s")
