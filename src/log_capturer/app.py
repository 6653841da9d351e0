"""Wiring: build the components from a config, start them in order, stop them with a drain.

Start order: sinks -> dispatcher -> sources -> HTTP. Stop order: sources stop
reading (files, syslog, stdin) -> the dispatcher hands over what is queued -> sinks wait for delivery
reports (up to ``dispatcher.drain_timeout`` in all) -> acknowledged positions
are saved. Lines not acknowledged by then are not checkpointed, so a restart
reads them again: nothing is lost, at worst re-sent.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from log_capturer import __version__
from log_capturer.config.loader import ConfigError, config_warnings
from log_capturer.config.paths import path_problems
from log_capturer.config.schema import Config, ProcessingConfig
from log_capturer.config.secrets import SecretScrubber, masked_config, secret_values
from log_capturer.engine.replay import SinkReplay
from log_capturer.memory import settle_gc, tune_malloc
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
from log_capturer.pipeline.routing import Router
from log_capturer.processing import Analyzer
from log_capturer.processing.pipelines import Pipeline, PipelineError, load_pipelines
from log_capturer.registry import Sinks, Sources, sink_components, source_components
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.reliability.dlq.reprocess import Reprocessor
from log_capturer.reload import Outcome, changes, restart_only_changes
from log_capturer.sinks.base import (
    CommitsPositions,
    HasDLQTopic,
    ReplaySink,
    Sink,
    SinkContext,
    SinkHealth,
    SinkStartError,
    utc_now_iso,
)
from log_capturer.sources.base import (
    BuildContext,
    FiniteInput,
    FollowsFiles,
    Handler,
    HasPositions,
    ResumesFrom,
    ServesRoutes,
    Source,
    SourceStartError,
)

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


#: Counters of a sink's /stats whose sum grows with every line it acknowledged (any way).
ACKNOWLEDGED_STATS = ("delivered", "parked", "sent_to_dlq_topic")


class AgentError(RuntimeError):
    """The agent cannot start with this configuration; the message says what to change."""


def require_sink(config: Config) -> None:
    """The agent ships somewhere: at least one sink is enabled."""
    components = sink_components(config.sinks)
    if not any(comp.enabled(section) for _key, section, comp in components):
        names = " or ".join(f"sinks.{key}.enabled: true" for key, _s, _c in components)
        raise AgentError(f"no sink is enabled: set {names}")


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
    (:func:`require_sink`, :func:`build_pipelines`, each enabled sink's ``problems``, e.g. the
    Kafka sink's TLS files and producer configuration, and in ``run`` the log file and positions
    directory). Whether a broker answers, or a port is free, is not checked here.
    """
    problems: list[str] = []
    checks: tuple[Callable[[Config], object], ...] = (require_sink, build_pipelines)
    for check in checks:
        try:
            check(config)
        except AgentError as exc:
            problems.append(str(exc))
    for _key, section, comp in sink_components(config.sinks):
        if comp.enabled(section):
            problems += comp.problems(section)
    for _key, section, scomp in source_components(config):
        problems += scomp.problems(section)
    return problems + path_problems(config)


def raw_preflight(data: Mapping[str, Any]) -> list[str]:
    """The checks of :func:`preflight` that can run on a config that failed validation.

    ``data`` is the file's mapping. The pipelines file and each sink's files (the Kafka sink's
    TLS files) are checked when the sections naming them are valid, so ``validate`` reports their
    problems in the same run as the config's.
    """
    problems: list[str] = []
    processing = _section(ProcessingConfig, data, "processing")
    if processing is not None and processing.enabled:
        try:
            read_pipelines(processing.pipelines_file)
        except AgentError as exc:
            problems.append(str(exc))
    sinks = data.get("sinks")
    if isinstance(sinks, dict):
        for key, _defaults, comp in sink_components(Sinks()):
            raw = sinks.get(key)
            if isinstance(raw, dict):
                problems += comp.raw_problems(raw)
    return problems


def _section(model: type[M], data: Mapping[str, Any], key: str) -> M | None:
    """``data[key]`` validated as ``model``, or None when it is not valid."""
    try:
        return model.model_validate(data.get(key) or {})
    except ValidationError:
        return None


def pipelines_digest(config: Config) -> str:
    """A digest of the pipelines file's bytes ('' when processing is off or it cannot be read):
    a reload re-reads the pipelines when only the file changed."""
    if not config.processing.enabled:
        return ""
    try:
        return hashlib.sha256(Path(config.processing.pipelines_file).read_bytes()).hexdigest()
    except OSError:
        return ""


def pipelines_by_source_type(config: Config) -> dict[str, str]:
    """source_type -> pipeline for sources that do not name theirs on each chunk (files, containers)."""
    by_type = dict(config.processing.source_type_pipelines)
    for _key, section, comp in source_components(config):
        by_type.update(comp.pipelines(section))
    return by_type


def key_field_of(config: Config) -> str | None:
    """The field whose value is each line's partition key, if an enabled sink partitions by one."""
    for _key, section, comp in sink_components(config.sinks):
        if comp.enabled(section) and (field := comp.key_field(section)):
            return field
    return None


class Agent:
    """The sources, the dispatcher and the sinks a configuration enables, built from the component
    registry (:mod:`log_capturer.registry`), and the agent's API, metrics and DLQ around them."""

    def __init__(
        self,
        config: Config,
        worker: tuple[int, int] | None = None,
        loader: Callable[[], Config] | None = None,
    ) -> None:
        """``worker``: (index, count) when this agent is one worker of a multi-process agent.
        ``loader``: reads the configuration again, as the agent was given it, for a reload."""
        require_sink(config)
        self.config = config
        self.worker = worker
        self.loader = loader
        self.metrics = Metrics()
        self.started_at = time.time()
        dlq_cfg = config.dispatcher.dlq_config
        self.dlq = DeadLetterStore(dlq_cfg, self.metrics) if dlq_cfg.enabled else None
        #: The running sinks by section key (``kafka``), in registry order.
        self._sinks: dict[str, Sink] = self._build_sinks(config, list(Sinks.model_fields))
        self.reprocessor: Reprocessor | None = None
        self._set_replay_target()
        self.pipelines = build_pipelines(config, self.metrics)
        self._pipelines_digest = pipelines_digest(config)
        self.dispatcher = Dispatcher(
            config.dispatcher, self.sinks, self._analyzer(config), self.metrics, self._router(config)
        )
        #: Every source that runs, by section key, with its /stats key; and the /stats blocks of
        #: those that do not run, by section key.
        self._sources: dict[str, tuple[str, Source]] = {}
        #: The sources last asked by finite_input, and the finite one among them.
        self._finite_cache: tuple[list[Source], FiniteInput | None] | None = None
        self._idle_stats: dict[str, tuple[str, dict[str, Any]]] = {}
        self._build_sources(config, list(Sources.model_fields))
        self.stalls = StallDetector(config.server.stalled_after)
        self.metrics.registry.register(ComponentHealthCollector(self.components))
        self.metrics.registry.register(FileLagCollector(self.file_lags, config.metrics.file_lag_series_limit))
        #: Masks every secret the agent knows in API answers (see config.secrets).
        self.scrubber = SecretScrubber(secret_values(config))
        self.http = HttpServers()
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        #: One reload at a time, never during a stop; the last one's outcome, for /stats.
        self._reload_lock = threading.Lock()
        self.last_reload: dict[str, Any] = {}

    @property
    def sinks(self) -> list[Sink]:
        return list(self._sinks.values())

    @property
    def sources(self) -> list[tuple[str, Source]]:
        """(/stats key, source) of every source that runs, in start order."""
        return list(self._sources.values())

    def _build_sinks(self, config: Config, keys: list[str]) -> dict[str, Sink]:
        """The sinks of sections ``keys`` that ``config`` enables, by key (not started)."""
        ctx = SinkContext(config, self.metrics, self.dlq, self.worker)
        return {
            key: sink
            for key, section, comp in sink_components(config.sinks)
            if key in keys and (sink := comp.build(section, ctx)) is not None
        }

    def _build_sources(self, config: Config, keys: list[str]) -> None:
        """Build the sources of sections ``keys`` (not started) into ``_sources``/``_idle_stats``."""
        ctx = BuildContext(config, self.dispatcher, self.metrics, self.worker, self.dlq)
        for key, section, comp in source_components(config):
            if key not in keys:
                continue
            source = comp.build(section, ctx)
            if source is None:
                self._idle_stats[key] = (comp.stats_key, dict(comp.idle_stats))
            else:
                self._sources[key] = (comp.stats_key, source)

    def _analyzer(self, config: Config) -> Analyzer:
        return Analyzer(key_field_of(config), self.pipelines, pipelines_by_source_type(config))

    def _router(self, config: Config) -> Router[Sink]:
        return Router(config.routes, list(self._sinks.items()))

    def _set_replay_target(self) -> None:
        """Replays the local DLQ's entries (reprocessing, POST /dlq/reprocess), each to the sink
        that parked it."""
        replayers = [s for s in self.sinks if isinstance(s, ReplaySink)]
        self.replay_target = SinkReplay(replayers) if replayers else None
        self.reprocessor = None
        if self.dlq is not None and self.replay_target is not None:
            cfg = self.config.dispatcher.dlq_config.reprocessing_config
            self.reprocessor = Reprocessor(self.dlq, cfg, self.replay_target, self.metrics)

    def source(self, name: str) -> Source | None:
        """The running source called ``name`` (``file_source``, ``http_ingest``...), if any."""
        return next((s for _, s in self.sources if s.name == name), None)

    @property
    def finite_input(self) -> FiniteInput | None:
        """The source whose input ends (standard input), if one runs."""
        sources = [s for _, s in self.sources]
        cached = self._finite_cache
        same = (
            cached is not None
            and len(cached[0]) == len(sources)
            and all(a is b for a, b in zip(cached[0], sources, strict=True))
        )
        if cached is None or not same:
            # A runtime protocol check walks every class of the MRO (about a millisecond of the
            # GIL with a handful of sources); the run loop asks five times a second.
            found = next((s for s in sources if isinstance(s, FiniteInput)), None)
            cached = self._finite_cache = (sources, found)
        return cached[1]

    @property
    def outstanding(self) -> int:
        """Lines the sinks hold without an acknowledgement (what a stop leaves to be read again)."""
        return sum(_int(s.stats().get("outstanding")) for s in self.sinks)

    # -- lifecycle -----------------------------------------------------------------------------
    def _link_committed_positions(self) -> None:
        """A sink that commits positions with its records (Kafka's exactly_once): the file source
        resumes from the positions it committed, and gives it its positions at each commit."""
        for sink in self.sinks:
            if not isinstance(sink, CommitsPositions) or not sink.commits_positions:
                continue
            for _, source in self.sources:
                if isinstance(source, ResumesFrom):
                    kind = source.positions_key
                    source.resume_from(sink.committed_positions(kind))
                    sink.commit_positions_of(source.positions, kind)

    def start(self) -> None:
        for text in config_warnings(self.config):
            log.warning(text)
        malloc = tune_malloc(producer=self.config.sinks.kafka.enabled)
        for sink in self.sinks:
            try:
                sink.start()
            except SinkStartError as exc:
                raise AgentError(str(exc)) from exc
        self._link_committed_positions()
        self.dispatcher.start()
        if self.reprocessor is not None and self.config.dispatcher.dlq_config.reprocessing_config.enabled:
            self.reprocessor.start()
        cfg = self.config
        for _, source in self.sources:
            if isinstance(source, FiniteInput):
                continue  # last: its input may end at once, and the agent then stops
            try:
                source.start()
            except SourceStartError as exc:
                self.stop()
                raise AgentError(str(exc)) from exc
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
                    self.routes,
                    dlq_stats=self.dlq_stats,
                    dlq_reprocess=self.dlq_reprocess,
                    config_reload=self.config_reload,
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
        for _, source in self.sources:
            if isinstance(source, FiniteInput):
                source.start()
        log.debug("effective configuration", extra={"config": self.config_dump()})
        gc_state = settle_gc()
        log.info(
            "agent started",
            extra={
                "version": __version__,
                "sinks": [s.name for s in self.sinks],
                "sources": {s.name: s.health() for _, s in self.sources},
                "pipelines": sorted(self.pipelines),
                "malloc": malloc,
                "gc": gc_state,
            },
        )

    def routes(self) -> dict[str, Handler]:
        """The POST routes of the running sources (HTTP ingest), path -> handler."""
        return {path: h for _, s in self.sources if isinstance(s, ServesRoutes) for path, h in s.routes()}

    @property
    def input_finished(self) -> bool:
        """True once standard input ended and every line of it was queued (stdin runs only)."""
        source = self.finite_input
        return source is not None and source.finished.is_set()

    def stop(self) -> None:
        """Graceful stop: drain within ``dispatcher.drain_timeout``, then checkpoint what was acked.
        A reload in progress ends first."""
        with self._reload_lock, self._stop_lock:
            if self._stopped.is_set():
                return
            deadline = time.monotonic() + self.config.dispatcher.drain_timeout
            log.info(
                "stopping: draining in-flight lines",
                extra={"drain_timeout_s": self.config.dispatcher.drain_timeout},
            )
            for _, source in self.sources:
                source.stop(max(0.1, deadline - time.monotonic()))
            if not self.dispatcher.close(max(0.1, deadline - time.monotonic())):
                log.warning("dispatcher did not hand over every queued line before the deadline")
            if self.reprocessor is not None:
                self.reprocessor.stop()
            for sink in self.sinks:
                sink.stop(max(0.1, deadline - time.monotonic()))
            for _, source in self.sources:
                source.finish()
            self.http.stop()
            self._stopped.set()
            log.info("stopped", extra={"lines_in": self.dispatcher.lines_in})

    # -- configuration reload ------------------------------------------------------------------
    def config_reload(self) -> tuple[int, dict[str, Any]]:
        """``POST /config/reload`` (and SIGHUP): read the configuration again and apply it."""
        outcome = self.reload_file()
        return outcome.http_status, outcome.as_dict()

    def reload_file(self) -> Outcome:
        """Load the configuration as at start (:attr:`loader`) and :meth:`reload` it. A worker of
        a multi-process agent has no loader: its supervisor reads the file and hands it over."""
        if self.loader is None:
            return self._record(
                Outcome.refused(["this agent was not started from a configuration file; nothing to reload"])
            )
        try:
            new = self.loader()
        except ConfigError as exc:
            return self._record(Outcome.refused(exc.problems))
        return self.reload(new)

    def reload(self, new: Config) -> Outcome:
        """Apply ``new`` without a restart, losing and repeating no line, or refuse it and keep
        the running configuration (see :mod:`log_capturer.reload`)."""
        if not self._reload_lock.acquire(blocking=False):
            return self._record(Outcome("failed", errors=["a reload is in progress; try again when it ends"]))
        try:
            if self._stopped.is_set():
                outcome = Outcome("failed", errors=["the agent is stopping"])
            else:
                outcome = self._reload(new)
                if outcome.status not in ("unchanged", "refused"):
                    settle_gc()  # what the old components leave is collected, the new ones frozen
        except Exception as exc:  # a bug: said and counted, the agent goes on
            log.exception("configuration reload failed")
            outcome = Outcome("failed", errors=[f"{type(exc).__name__}: {exc}"])
        finally:
            self._reload_lock.release()
        return self._record(outcome)

    def _record(self, outcome: Outcome) -> Outcome:
        self.metrics.config_reloads.labels(outcome.status).inc()
        self.last_reload = {**outcome.as_dict(), "at": utc_now_iso()}
        level = logging.WARNING if outcome.status in ("refused", "failed") else logging.INFO
        log.log(level, "configuration reload: %s", outcome.status, extra=outcome.as_dict())
        return outcome

    def _reload(self, new: Config) -> Outcome:
        problems = preflight(new)
        if problems:
            return Outcome.refused(problems)
        restart = restart_only_changes(self.config, new)
        if restart:
            return Outcome.refused(restart)
        digest = pipelines_digest(new)
        todo = changes(self.config, new, digest != self._pipelines_digest)
        if not todo:
            return Outcome("unchanged")
        try:
            pipelines = build_pipelines(new, self.metrics) if todo.processing else self.pipelines
        except AgentError as exc:  # the file changed since preflight read it
            return Outcome.refused([str(exc)])
        timeout = self.config.dispatcher.drain_timeout
        added = self._build_sinks(new, todo.sinks)
        started: list[Sink] = []
        try:
            for sink in added.values():
                sink.start()
                started.append(sink)
        except SinkStartError as exc:
            for sink in started:
                sink.stop(0.1)
            return Outcome("failed", changed=[], errors=[str(exc)])
        # The changed sources stop first, the gate still open, so that what they buffer is handed
        # over; then every source waits at the gate while what was taken is acknowledged.
        stopped = {key: self._sources.pop(key) for key in todo.sources if key in self._sources}
        for _, source in stopped.values():
            source.stop(timeout)
        if self.reprocessor is not None:
            self.reprocessor.stop()
        self.dispatcher.pause()
        try:
            pending = self._wait_quiet(timeout)
            if pending:
                for sink in added.values():
                    sink.stop(0.1)
                self._restart_sources(stopped, self.config)
                return Outcome(
                    "failed",
                    errors=[
                        f"{pending} lines were not acknowledged within dispatcher.drain_timeout "
                        f"({timeout:g}s): nothing was changed; reload again when the sinks deliver"
                    ],
                )
            for key in todo.sinks:
                if (old := self._sinks.pop(key, None)) is not None:
                    old.stop(timeout)
            order = [key for key, _s, _c in sink_components(new.sinks)]
            merged = {**self._sinks, **added}
            self._sinks = {key: merged[key] for key in order if key in merged}
            self.config = new
            self.pipelines = pipelines
            self._pipelines_digest = digest
            self.dispatcher.replace(self.sinks, self._analyzer(new), self._router(new))
            errors = self._restart_sources(stopped, new, todo.sources)
        finally:
            self.dispatcher.resume()
            self._set_replay_target()
            if self.reprocessor is not None and self.config.dispatcher.dlq_config.reprocessing_config.enabled:
                self.reprocessor.start()
        self.scrubber = SecretScrubber(secret_values(new))
        return Outcome("reloaded", changed=todo.sections, errors=errors)

    def _wait_quiet(self, timeout: float) -> int:
        """With the gate closed: wait until every line taken was acknowledged; what is left."""
        deadline = time.monotonic() + timeout
        while True:
            queued = self.dispatcher.lines_in - self.dispatcher.lines_dispatched
            pending = self.outstanding + max(0, queued)
            if self.dispatcher.drained() and pending == 0:
                return 0
            if time.monotonic() >= deadline:
                return max(pending, 1)
            time.sleep(0.02)

    def _restart_sources(
        self, stopped: dict[str, tuple[str, Source]], config: Config, keys: list[str] | None = None
    ) -> list[str]:
        """Save the positions of the ``stopped`` sources, then build and start those of sections
        ``keys`` (default: the stopped ones) from ``config``; the problems of those that fail."""
        for _, source in stopped.values():
            source.finish()
        keys = list(stopped) if keys is None else keys
        for key in keys:
            self._idle_stats.pop(key, None)
        self._build_sources(config, keys)
        errors = []
        for key in keys:
            if key not in self._sources:
                continue
            try:
                self._sources[key][1].start()
            except SourceStartError as exc:
                del self._sources[key]
                errors.append(str(exc))
                log.error("source %s could not start after the reload: %s", key, exc)
        return errors

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
        for _, source in self.sources:
            if isinstance(source, FollowsFiles):
                lags += file_lags(source.files(live=True) + source.files(live=False))
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
        """``GET /dlq/stats``: the local store's counts, the sinks' DLQ topics, the reprocessor's."""
        if self.dlq is None:
            return {"enabled": False}
        out: dict[str, Any] = {"enabled": True, **self.dlq.stats()}
        for sink in self.sinks:
            if isinstance(sink, HasDLQTopic):
                out[sink.dlq_topic_key] = sink.dlq_topic_stats()
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
        """Each source: its state (degraded while a crashed thread is restarted, with the error and
        the restarts; see sources.supervise) and its figures."""
        return [{"name": source.name, **source.health()} for _, source in self.sources]

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
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
            "dlq": {
                "entries_written": self.dlq.entries_written if self.dlq else 0,
                "last_error": self.dlq.last_error if self.dlq else "",
            },
            "pipelines": {
                name: {"step_failures": dict(p.failures), "redactions": dict(p.redactions)}
                for name, p in self.pipelines.items()
            },
        }
        out.update(dict(self._idle_stats.values()))
        for key, source in self.sources:
            out[key] = source.stats()
        out["reload"] = self.last_reload or {"status": "none"}
        return out

    def positions(self) -> dict[str, Any]:
        """``GET /positions``: every source with positions, under its key (files, containers)."""
        out: dict[str, Any] = {"files": {}, "containers": {}}
        for _, source in self.sources:
            if isinstance(source, HasPositions):
                out[source.positions_key] = source.positions()
        return out


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _human(seconds: float) -> str:
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m}m{sec}s" if h else (f"{m}m{sec}s" if m else f"{sec}s")
