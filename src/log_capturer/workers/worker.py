"""One worker process of a multi-process agent (``python -m log_capturer.workers.worker``).

Started by the supervisor (:mod:`.supervisor`), never by hand:

- standard input: the effective configuration as one JSON line; later, one more line per
  configuration reload (the new configuration, which the worker applies as one agent does:
  :meth:`log_capturer.app.Agent.reload`). The supervisor keeps the pipe open for as long as it
  lives; end of input means it is gone, and the worker drains and exits (no orphan keeps
  shipping lines behind a new agent's back);
- standard output: one JSON line ``{"event": "ready", "pid", "api", "metrics"}``
  once the agent runs, with the loopback URLs of its API and metrics servers, and one
  ``{"event": "reload", "status", "changed", "errors"}`` per reload line;
- SIGTERM or SIGINT: drain within ``dispatcher.drain_timeout`` and exit 0. SIGHUP is ignored:
  the supervisor reads the file and hands it over.

Exit codes: 0 after a drain, 2 when the agent cannot start (the reason is
logged), 1 when the configuration cannot be read.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import SecretStr, ValidationError

from log_capturer.config.schema import Config
from log_capturer.signals import StopFlag

if TYPE_CHECKING:
    from log_capturer.app import Agent

log = logging.getLogger("log_capturer.worker")

#: Smallest share of a byte budget a worker gets (the schema's minimum for queue_max_bytes).
MIN_QUEUE_BYTES = 1 << 20


def config_line(cfg: Config) -> bytes:
    """The effective configuration as the JSON line a worker reads (secrets in clear: a pipe only)."""

    def default(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        raise TypeError(f"cannot encode {type(value).__name__}")

    return orjson.dumps(cfg.model_dump(mode="python"), default=default) + b"\n"


def worker_config(cfg: Config, index: int, count: int) -> Config:
    """Worker ``index``'s config: its share of queues and sources, its HTTP servers on loopback.

    Every worker serves its API and metrics on free 127.0.0.1 ports (the
    supervisor serves the configured ones). Syslog, HTTP ingest and DLQ
    reprocessing run in worker 0 only; forward and OTLP in every worker (the
    port shared) unless their ``every_worker`` is off (see their ``build``).
    The queue sizes are the whole agent's budget: each worker gets ``1/count``
    of them.
    """
    c = cfg.model_copy(deep=True)
    c.app = c.app.model_copy(update={"workers": count})
    # Port 0 (a free port) is not a valid configured port: model_copy skips the validation.
    c.server = c.server.model_copy(update={"enabled": True, "host": "127.0.0.1", "port": 0})
    c.metrics = c.metrics.model_copy(update={"enabled": True, "host": "127.0.0.1", "port": 0})
    if index != 0:
        c.syslog.enabled = False
        c.http_ingest.enabled = False
        c.dispatcher.dlq_config.reprocessing_config.enabled = False
    elif not cfg.server.enabled:
        c.http_ingest.enabled = False  # the supervisor serves no API to forward it from
    d, k = c.dispatcher, c.sinks.kafka
    d.queue_size = max(1, d.queue_size // count)
    d.queue_max_bytes = max(MIN_QUEUE_BYTES, d.queue_max_bytes // count)
    k.queue_size = max(1, k.queue_size // count)
    k.queue_max_bytes = max(MIN_QUEUE_BYTES, k.queue_max_bytes // count)
    return c


class _WorkerField(logging.Filter):
    """Adds ``worker`` to every log record (a field of the JSON logs)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def _setup_logging(cfg: Config, index: int) -> None:
    from log_capturer.config.secrets import secret_values
    from log_capturer.observability.logs import setup_logging

    app = cfg.app
    setup_logging(
        app.log_level,
        app.log_format,
        app.name,
        app.log_file,
        environment=app.environment,
        secrets=secret_values(cfg),
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerField(index))
        if app.log_format == "text":
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s worker-%(worker)s %(name)s: %(message)s")
            )


_send_lock = threading.Lock()


def _send(event: dict[str, Any]) -> None:
    with _send_lock:
        sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
        sys.stdout.buffer.flush()


def _reload(agent: Agent | None, line: bytes, index: int, count: int) -> None:
    """Apply one configuration line from the supervisor and say how it went."""
    from log_capturer.reload import Outcome

    if agent is None:
        outcome = Outcome("failed", errors=["the worker is still starting"])
    else:
        try:
            outcome = agent.reload(worker_config(Config.model_validate_json(line), index, count))
        except (ValueError, ValidationError) as exc:
            outcome = Outcome.refused([f"the configuration from the supervisor cannot be read: {exc}"])
    _send({"event": "reload", **outcome.as_dict()})


def run(index: int, count: int) -> int:
    from log_capturer.app import Agent, AgentError
    from log_capturer.threadnames import name_threads

    name_threads()

    line = sys.stdin.buffer.readline()
    try:
        cfg = worker_config(Config.model_validate(orjson.loads(line)), index, count)
    except (ValueError, ValidationError) as exc:
        sys.stderr.write(f"worker {index}: cannot read the configuration from the supervisor: {exc}\n")
        return 1
    _setup_logging(cfg, index)
    # Set by the signal handlers: a StopFlag, not a threading.Event (log_capturer.signals).
    stop = StopFlag()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    running: list[Agent] = []

    def lifeline() -> None:
        # Each line: a reload. Ends at end of input: the supervisor is gone. A raw read: a daemon
        # thread blocked inside the buffered sys.stdin would abort the interpreter at exit.
        fd = sys.stdin.fileno()
        pending = b""
        with contextlib.suppress(OSError):
            while data := os.read(fd, 1 << 16):
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    _reload(running[0] if running else None, line, index, count)
        if not stop.is_set():
            log.warning("the supervisor is gone; draining and stopping")
            stop.set()

    threading.Thread(target=lifeline, name="lifeline", daemon=True).start()
    try:
        agent = Agent(cfg, worker=(index, count))
        agent.start()
    except AgentError as exc:
        log.error("worker cannot start: %s", exc, extra={"reason": str(exc)})
        return 2
    running.append(agent)
    bound = agent.http.bound  # metrics first, then the API (Agent.start adds them in that order)
    metrics_port, api_port = bound[0][1], bound[1][1]
    _send(
        {
            "event": "ready",
            "pid": os.getpid(),
            "api": f"http://127.0.0.1:{api_port}",
            "metrics": f"http://127.0.0.1:{metrics_port}{cfg.metrics.path}",
        }
    )
    while not stop.wait(0.5):
        pass
    agent.stop()
    remaining = agent.outstanding
    log.info(
        f"worker stopped; {remaining} lines unacknowledged (they will be re-read on restart)"
        if remaining
        else "worker stopped cleanly; every line read was acknowledged",
        extra={"unacknowledged": remaining},
    )
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m log_capturer.workers.worker",
        description="One worker of a multi-process agent; started by `log-capturer run --workers N`.",
    )
    parser.add_argument("--index", type=int, required=True, help="This worker's index, 0..count-1.")
    parser.add_argument("--count", type=int, required=True, help="How many workers the agent has.")
    args = parser.parse_args(argv)
    sys.exit(run(args.index, args.count))


if __name__ == "__main__":
    main()
