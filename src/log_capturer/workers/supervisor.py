"""The supervisor of a multi-process agent (``app.workers`` > 1).

It starts ``N`` worker processes (:mod:`.worker`), each a whole agent over its
share of the sources, serves the agent's configured HTTP ports from the
workers' answers (:mod:`.api`), restarts a worker that dies, and on SIGTERM or
Ctrl-C drains them all.

- **Start**: the positions are laid out for ``N`` workers and the positions
  directory is locked (:mod:`.positions`); the configured ports are bound
  (so a taken port fails before any worker runs); the workers start and each
  says when it is ready. If one exits before it is ready, the others are
  stopped and the agent exits 2 (the worker logged why).
- **A worker dies** (any exit the supervisor did not ask for, SIGKILL
  included): logged, counted in ``worker_restarts_total{worker}`` and
  ``/health`` (``checks.workers``; the agent is ``degraded`` until it runs
  again), and started again after a back-off (1 s, doubling while it keeps
  dying within a minute of its start, up to 30 s). It resumes from its saved
  positions: its files lose nothing, and at most the lines it had read but not
  yet checkpointed are sent again, as after a crash of a single process.
- **Stop**: every worker gets SIGTERM and drains within
  ``dispatcher.drain_timeout``; one still running 30 s later is killed. The
  exit code is 0 when every worker stopped cleanly.
- **The supervisor dies**: each worker's standard input (a pipe from the
  supervisor) ends, and the workers drain and exit by themselves. The lock on
  the positions directory is shared with the workers, so a new agent cannot
  start on it before the last of them has saved its positions.

``log-capturer run`` validates the configuration, lays the positions out and
takes the lock, then replaces itself (``exec``, same pid) with
``python -m log_capturer.workers.supervisor``: the supervisor runs without the
configuration schema or a Kafka client in memory. It reads what it needs
(:class:`SupervisorSettings`, with the workers' configuration line) from a
memory file descriptor and keeps the inherited lock descriptor open.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any, NoReturn

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from log_capturer import __version__
from log_capturer.observability.server import HttpServers
from log_capturer.workers.api import build_supervisor_api, build_supervisor_metrics

if TYPE_CHECKING:
    from log_capturer.config.schema import Config

log = logging.getLogger("log_capturer.supervisor")

#: A worker that is not ready this long after it was started is killed (and started again).
READY_TIMEOUT = 120.0
#: A worker that ran at least this long before it died is restarted after FIRST_BACKOFF.
STABLE_AFTER = 60.0
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
#: After drain_timeout, how much longer a worker may take to exit before it is killed.
STOP_GRACE = 30.0


class SupervisorError(RuntimeError):
    """The multi-process agent cannot start; the message says why."""


@dataclass(frozen=True)
class SupervisorSettings:
    """What the supervisor needs of the configuration (it never loads the schema itself)."""

    #: The workers' configuration: the whole effective config as one JSON line.
    config_line: bytes
    drain_timeout: float
    api: tuple[str, int] | None = None
    metrics: tuple[str, int, str] | None = None
    ingest: bool = False
    log_level: str = "info"
    log_format: str = "json"
    log_name: str = "ssw-logs-capture"
    log_file: str = ""
    #: The configuration file, read again at each reload ('' when unknown: no reload).
    config_path: str = ""

    def dumps(self) -> bytes:
        data = asdict(self)
        data["config_line"] = base64.b64encode(self.config_line).decode()
        return orjson.dumps(data)

    @classmethod
    def loads(cls, raw: bytes) -> SupervisorSettings:
        data = orjson.loads(raw)
        data["config_line"] = base64.b64decode(data["config_line"])
        for key in ("api", "metrics"):
            if data[key] is not None:
                data[key] = tuple(data[key])
        return cls(**data)


def settings_of(cfg: Config, config_path: str = "") -> SupervisorSettings:
    from log_capturer.workers.worker import config_line

    app = cfg.app
    return SupervisorSettings(
        config_path=config_path,
        config_line=config_line(cfg),
        drain_timeout=cfg.dispatcher.drain_timeout,
        api=(cfg.server.host, cfg.server.port) if cfg.server.enabled else None,
        metrics=(cfg.metrics.host, cfg.metrics.port, cfg.metrics.path) if cfg.metrics.enabled else None,
        ingest=cfg.server.enabled and cfg.http_ingest.enabled,
        log_level=app.log_level,
        log_format=app.log_format,
        log_name=app.name,
        log_file=app.log_file,
    )


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class WorkerProcess:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    #: starting | running | restarting | stopping | stopped
    state: str = "starting"
    api: str | None = None
    metrics: str | None = None
    restarts: int = 0
    last_exit: str = ""
    last_exit_at: float | None = None
    started_at: float = 0.0
    ready_at: float | None = None
    next_start: float = 0.0
    backoff: float = FIRST_BACKOFF
    ready: threading.Event = field(default_factory=threading.Event)
    #: The answers of its reloads ({"status", "changed", "errors"}), as they come.
    reloads: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    def describe(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "index": self.index,
            "pid": self.proc.pid if self.proc is not None and self.state != "restarting" else None,
            "state": self.state,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_exit_at": self.last_exit_at,
            "uptime_seconds": round(now - self.ready_at, 3) if self.ready_at is not None else 0.0,
        }


class Supervisor:
    def __init__(self, settings: SupervisorSettings, count: int, lock_fd: int | None = None) -> None:
        if count < 2:
            raise ValueError("a supervisor runs 2 or more workers")
        self.settings = settings
        self.count = count
        #: The positions directory lock, inherited by every worker (see the module docstring).
        self._lock_fd = lock_fd
        self._config_line = settings.config_line
        self.workers = [WorkerProcess(i) for i in range(count)]
        self.started_at = time.time()
        self._guard = threading.Lock()
        self._reload_lock = threading.Lock()
        self._stopping = False
        #: Set once every worker was ready the first time (before, /stats answers 503).
        self.running = threading.Event()
        self.registry = CollectorRegistry()
        self.worker_up = Gauge(
            "worker_up",
            "1 while the worker process runs, 0 while it restarts.",
            ["worker"],
            registry=self.registry,
        )
        self.worker_restarts = Counter(
            "worker_restarts",
            "Worker processes that died and were started again.",
            ["worker"],
            registry=self.registry,
        )
        for w in self.workers:
            self.worker_up.labels(str(w.index)).set(0)
            self.worker_restarts.labels(str(w.index))
        self.http = HttpServers()

    # -- what the HTTP side reads --------------------------------------------------------------
    def api_urls(self) -> list[tuple[int, str | None]]:
        with self._guard:
            return [(w.index, w.api if w.state == "running" else None) for w in self.workers]

    def metrics_urls(self) -> list[tuple[int, str | None]]:
        with self._guard:
            return [(w.index, w.metrics if w.state == "running" else None) for w in self.workers]

    def processes(self) -> list[dict[str, Any]]:
        with self._guard:
            return [w.describe() for w in self.workers]

    def identity(self) -> dict[str, Any]:
        uptime = time.time() - self.started_at
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_seconds": round(uptime, 3),
            "workers_count": self.count,
        }

    # -- configuration reload ------------------------------------------------------------------
    def reload(self) -> tuple[int, dict[str, Any]]:
        """``POST /config/reload`` and SIGHUP: read the file again and hand it to every running
        worker, which applies it as one agent does; the workers' answers, and the HTTP status of
        the worst. A worker that starts later starts with the new configuration once one worker
        applied it."""
        from log_capturer.config.loader import ConfigError, load_config
        from log_capturer.workers.worker import config_line

        with self._reload_lock:
            path = self.settings.config_path
            try:
                if not path:
                    raise ConfigError(["this agent was not started from a configuration file"])
                cfg = load_config(path)
            except ConfigError as exc:
                return 422, {"status": "refused", "changed": [], "errors": exc.problems}
            cfg.app.workers = self.count
            line = config_line(cfg)
            answers = [self._reload_worker(w, line) for w in self.workers]
            statuses = {a["status"] for a in answers}
            if statuses & {"reloaded", "unchanged"}:
                self._config_line = line
            status = next(s for s in ("failed", "refused", "reloaded", "unchanged") if s in statuses)
            code = {"reloaded": 200, "unchanged": 200, "refused": 422}.get(status, 503)
            log.log(logging.INFO if code == 200 else logging.WARNING, "configuration reload: %s", status)
            return code, {"status": status, "workers": answers}

    def _reload_worker(self, w: WorkerProcess, line: bytes) -> dict[str, Any]:
        with self._guard:
            proc = w.proc if w.state == "running" else None
        answer: dict[str, Any] = {"status": "failed", "errors": [f"worker {w.index} is not running"]}
        if proc is not None and proc.stdin is not None:
            while not w.reloads.empty():  # answers of reloads that timed out
                w.reloads.get_nowait()
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
                answer = w.reloads.get(timeout=self.settings.drain_timeout + STOP_GRACE)
            except OSError as exc:
                answer["errors"] = [f"worker {w.index} cannot be reached: {exc}"]
            except queue.Empty:
                answer["errors"] = [f"worker {w.index} did not answer in time"]
        answer.pop("event", None)
        return {"worker": w.index, **answer}

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        st = self.settings
        if st.metrics is not None:
            host, port, path = st.metrics
            self.http.add(build_supervisor_metrics(self, path, self.registry), host, port)
        if st.api is not None:
            self.http.add(build_supervisor_api(self, st.ingest), *st.api)
        if st.metrics is not None or st.api is not None:
            try:
                self.http.start()
            except OSError as exc:
                raise SupervisorError(
                    f"cannot listen for HTTP: {exc.strerror}; change server.port or metrics.port"
                ) from exc
        for w in self.workers:
            self._spawn(w)
        deadline = time.monotonic() + READY_TIMEOUT
        for w in self.workers:
            while not w.ready.wait(0.2):
                proc = w.proc
                if proc is not None and proc.poll() is not None:
                    self.stop()
                    raise SupervisorError(
                        f"worker {w.index} exited at start-up ({describe_exit(proc.returncode)}); "
                        "its log above says why"
                    )
                if time.monotonic() > deadline:
                    self.stop()
                    raise SupervisorError(f"worker {w.index} was not ready within {READY_TIMEOUT:g}s")
        self.running.set()
        log.info(
            "agent started",
            extra={
                "version": __version__,
                "workers": [p["pid"] for p in self.processes()],
                "api": "{}:{}".format(*st.api) if st.api else None,
                "metrics": "{}:{}".format(*st.metrics[:2]) if st.metrics else None,
            },
        )

    def _spawn(self, w: WorkerProcess) -> None:
        cmd = [sys.executable, "-m", "log_capturer.workers.worker", "--index", str(w.index)]
        cmd += ["--count", str(self.count)]
        fds = (self._lock_fd,) if self._lock_fd is not None else ()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # The workers' logs go where the supervisor's go.
            stderr=None,
            pass_fds=fds,
            # Ctrl-C reaches the supervisor only; it stops the workers in order.
            start_new_session=True,
        )
        with self._guard:
            w.proc = proc
            w.state = "starting"
            w.api = w.metrics = None
            w.ready.clear()
            w.ready_at = None
            w.started_at = time.monotonic()
        assert proc.stdin is not None
        try:
            proc.stdin.write(self._config_line)
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died at once: poll() sees it
        threading.Thread(
            target=self._read_events, args=(w, proc), name=f"worker-{w.index}-events", daemon=True
        ).start()
        log.info("worker started", extra={"worker": w.index, "pid": proc.pid})

    def _read_events(self, w: WorkerProcess, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                event = orjson.loads(raw)
            except ValueError:
                sys.stderr.buffer.write(raw)  # something the worker printed: pass it on
                continue
            if isinstance(event, dict) and event.get("event") == "ready":
                with self._guard:
                    if w.proc is proc and w.state == "starting":
                        w.api, w.metrics = str(event["api"]), str(event["metrics"])
                        w.state = "running"
                        w.ready_at = time.monotonic()
                        self.worker_up.labels(str(w.index)).set(1)
                w.ready.set()
            elif isinstance(event, dict) and event.get("event") == "reload" and w.proc is proc:
                w.reloads.put(event)

    def poll(self) -> None:
        """Restart workers that died; kill those that never got ready. Called every ~0.2 s."""
        now = time.monotonic()
        for w in self.workers:
            proc = w.proc
            if self._stopping:
                return
            if w.state in ("starting", "running") and proc is not None and proc.poll() is not None:
                self._died(w, proc.returncode, now)
            elif w.state == "restarting" and now >= w.next_start:
                self._spawn(w)
            elif w.state == "starting" and now - w.started_at > READY_TIMEOUT and proc is not None:
                log.error("worker not ready in time; killing it", extra={"worker": w.index, "pid": proc.pid})
                proc.kill()

    def _died(self, w: WorkerProcess, code: int, now: float) -> None:
        ran = now - (w.ready_at if w.ready_at is not None else w.started_at)
        with self._guard:
            w.backoff = (
                FIRST_BACKOFF if ran >= STABLE_AFTER or w.restarts == 0 else min(w.backoff * 2, MAX_BACKOFF)
            )
            w.restarts += 1
            w.last_exit = describe_exit(code)
            w.last_exit_at = time.time()
            w.state = "restarting"
            w.api = w.metrics = None
            w.next_start = now + w.backoff
        self.worker_up.labels(str(w.index)).set(0)
        self.worker_restarts.labels(str(w.index)).inc()
        if w.proc is not None and w.proc.stdin is not None:
            with contextlib.suppress(OSError):
                w.proc.stdin.close()
        log.error(
            "worker died; restarting it from its saved positions",
            extra={
                "worker": w.index,
                "pid": w.proc.pid if w.proc else None,
                "exit": w.last_exit,
                "restarts": w.restarts,
                "restart_in_s": w.backoff,
            },
        )

    def stop(self) -> int:
        """SIGTERM every worker, wait for their drains; 0 when all stopped cleanly."""
        self._stopping = True
        running = []
        for w in self.workers:
            with self._guard:
                w.state = "stopping"
            proc = w.proc
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                running.append((w, proc))
        deadline = time.monotonic() + self.settings.drain_timeout + STOP_GRACE
        code = 0
        for w, proc in running:
            try:
                rc = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker did not stop in time; killing it", extra={"worker": w.index})
                proc.kill()
                rc = proc.wait(10)
            # Killed by this SIGTERM before it installed its handler: it had not started an agent.
            early = rc == -signal.SIGTERM and w.ready_at is None
            if rc != 0 and not early:
                log.error("worker stopped badly", extra={"worker": w.index, "exit": describe_exit(rc)})
                code = 1
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            with self._guard:
                w.state = "stopped"
            self.worker_up.labels(str(w.index)).set(0)
        self.http.stop()
        return code


def run_supervisor(settings: SupervisorSettings, count: int, lock_fd: int | None) -> int:
    """Run a multi-process agent in the foreground until SIGTERM or Ctrl-C; the exit code."""
    sup = Supervisor(settings, count, lock_fd)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    def on_hangup(_signum: int, _frame: Any) -> None:
        threading.Thread(target=sup.reload, name="config-reload", daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    try:
        sup.start()
    except SupervisorError as exc:
        log.error(str(exc))
        return 2
    while not stop.wait(0.2):
        sup.poll()
    log.info(
        "stopping: draining every worker",
        extra={"drain_timeout_s": settings.drain_timeout, "workers": count},
    )
    code = sup.stop()
    log.info("stopped" if code == 0 else "stopped; a worker did not stop cleanly", extra={"exit_code": code})
    return code


def exec_supervisor(settings: SupervisorSettings, count: int, lock: IO[str] | None) -> NoReturn:
    """Replace this process (same pid) with the supervisor of ``count`` workers."""
    fd = os.memfd_create("log-capturer-supervisor")
    os.set_inheritable(fd, True)  # the supervisor reads it after the exec
    os.write(fd, settings.dumps())
    os.lseek(fd, 0, os.SEEK_SET)
    cmd = [sys.executable, "-m", "log_capturer.workers.supervisor", "--count", str(count)]
    cmd += ["--settings-fd", str(fd)]
    if lock is not None:
        os.set_inheritable(lock.fileno(), True)
        cmd += ["--lock-fd", str(lock.fileno())]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)


def main(argv: list[str] | None = None) -> NoReturn:
    from log_capturer.observability.logs import setup_logging
    from log_capturer.threadnames import SUPERVISOR_NAME, name_threads

    parser = argparse.ArgumentParser(
        prog="python -m log_capturer.workers.supervisor",
        description="The supervisor of a multi-process agent; started by `log-capturer run --workers N`.",
    )
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--settings-fd", type=int, required=True)
    parser.add_argument("--lock-fd", type=int, default=None)
    args = parser.parse_args(argv)
    with os.fdopen(args.settings_fd, "rb") as f:
        settings = SupervisorSettings.loads(f.read())
    setup_logging(settings.log_level, settings.log_format, settings.log_name, settings.log_file)
    name_threads(SUPERVISOR_NAME)
    sys.exit(run_supervisor(settings, args.count, args.lock_fd))


if __name__ == "__main__":
    main()
