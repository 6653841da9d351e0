"""Helpers shared by the tests: waiting, consuming Kafka, running the agent as a real process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
import pytest
import yaml

from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.topics import TOPICS, TopicSpec, create_topics

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m log_capturer ARGS`` as a user runs it; with ``check``, fail unless it exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "log_capturer", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def free_port_base(offsets: Sequence[int], attempts: int = 200) -> int:
    """A port P such that P + each offset is free on 127.0.0.1: ``kafka up`` lays its listeners out
    at fixed offsets from ``--port`` (nodes +0/+1/+2, SASL +10, TLS +20/+30/+40, SASL_SSL +50,
    controllers +100...)."""
    for _ in range(attempts):
        base = free_port()
        if base + max(offsets) <= 65535 and all(_bindable(base + o) for o in offsets):
            return base
    raise AssertionError(f"found no free port P with P+{list(offsets)} all free in {attempts} tries")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``pred`` until it returns a truthy value; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


_LOGFMT_PAIR = re.compile(r'([^ ="]+)=("(?:[^"\\]|\\.)*"|[^ "=]*)(?: |$)')


def parse_logfmt(record: bytes | str) -> dict[str, Any]:
    """A strict logfmt reader for the tests: key=value or key="escaped value", space-separated,
    each key once."""
    text = record.decode() if isinstance(record, bytes) else record
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(text):
        m = _LOGFMT_PAIR.match(text, pos)
        assert m, f"not logfmt at {pos}: {text[pos:]!r}"
        key, value = m.group(1), m.group(2)
        assert key not in out, f"{key} twice in {text!r}"
        out[key] = orjson.loads(value) if value.startswith('"') else value  # logfmt's escapes are JSON's
        pos = m.end()
    return out


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    def json(self) -> dict[str, Any]:
        return orjson.loads(self.value)  # type: ignore[no-any-return]


def topic_set(prefix: str) -> dict[str, str]:
    """Names of a test's private copies of the topics (devtools.topics.TOPICS)."""
    return {t.name: f"{prefix}-{t.name}" for t in TOPICS}


def create_prefixed_topics(
    bootstrap: str, prefix: str, replication_factor: int = 1, min_isr: int | None = None
) -> dict[str, str]:
    names = topic_set(prefix)
    specs = tuple(
        TopicSpec(names[t.name], t.partitions, t.retention_days, t.purpose, t.compact) for t in TOPICS
    )
    create_topics(bootstrap, replication_factor, min_isr, topics=specs)
    return names


def consume_all(
    bootstrap: str,
    topics: Iterable[str],
    expected: int | None = None,
    timeout: float = 120.0,
    group: str | None = None,
) -> list[Rec]:
    """Every record in ``topics`` from the beginning up to the high watermarks.

    With ``expected``, keeps re-reading the watermarks until at least that many
    records exist (or ``timeout`` passes), so a test can wait for the agent.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    def new_consumer() -> Any:
        return Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group or f"verify-{os.getpid()}-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            }
        )

    consumer = new_consumer()
    try:
        md = consumer.list_topics(timeout=30)
        parts = [TopicPartition(t, p) for t in topics for p in md.topics[t].partitions]
        deadline = time.monotonic() + timeout
        while True:
            try:
                highs = {(t.topic, t.partition): consumer.get_watermark_offsets(t, 10)[1] for t in parts}
            except KafkaException:
                # No reachable leader (a broker died), or a handle whose metadata stays stale: CI
                # once saw "Unknown partition" for a minute right after a broker's SIGSTOP/SIGCONT
                # with every leader known. A new handle asks the broker afresh.
                if time.monotonic() > deadline:
                    raise
                consumer.close()
                time.sleep(0.5)
                consumer = new_consumer()
                continue
            total = sum(highs.values())
            if expected is None or total >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        consumer.assign([TopicPartition(tp.topic, tp.partition, 0) for tp in parts])
        out: list[Rec] = []
        remaining = {k for k, h in highs.items() if h > 0}
        read_deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < read_deadline:
            for m in consumer.consume(10000, 1.0):
                if m.error():
                    continue
                out.append(
                    Rec(m.topic(), m.partition(), m.offset(), m.key(), m.value(), tuple(m.headers() or ()))
                )
                if m.offset() + 1 >= highs[(m.topic(), m.partition())]:
                    remaining.discard((m.topic(), m.partition()))
        assert not remaining, f"could not read partitions {remaining} up to their watermarks"
        return out
    finally:
        consumer.close()


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def agent_config(tmp: Path, bootstrap: str, topics: dict[str, str], **sections: Any) -> dict[str, Any]:
    """A config for one test agent: its own ports, directories and topics."""
    cfg: dict[str, Any] = {
        "app": {"log_format": "json", "log_level": "info"},
        "server": {"host": "127.0.0.1", "port": free_port()},
        "metrics": {"host": "127.0.0.1", "port": free_port()},
        "files_config": {
            "watch_directories": [str(tmp / "logs")],
            "rescan_interval": "500ms",
            "poll_interval": "50ms",
        },
        "dispatcher": {"dlq_config": {"directory": str(tmp / "dlq")}, "drain_timeout": "30s"},
        "positions": {"directory": str(tmp / "positions"), "flush_interval": "500ms"},
        "sinks": {
            "kafka": {
                "enabled": True,
                "brokers": bootstrap.split(","),
                "topic": topics["logs"],
                "compression": "zstd",
                "required_acks": -1,
                "batch_timeout": "20ms",
                "priority_routing": {
                    "high_topic": topics["logs-high-priority"],
                    "normal_topic": topics["logs-normal-priority"],
                    "low_topic": topics["logs-low-priority"],
                },
                "dlq_config": {"topic": topics["logs-dlq"]},
            }
        },
    }
    for name, value in sections.items():
        _merge(cfg.setdefault(name, {}), value)
    (tmp / "logs").mkdir(parents=True, exist_ok=True)
    return cfg


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


class AgentProcess:
    """The agent as a real child process (``python -m log_capturer run``), driven by signals."""

    def __init__(
        self,
        config: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        fd_limit: int | None = None,
    ) -> None:
        self.config = config
        self.log_path = log_path
        #: Soft RLIMIT_NOFILE for the agent process (e.g. 1024, a common default).
        self.fd_limit = fd_limit
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        data = yaml.safe_load(config.read_text())
        self.api = f"http://127.0.0.1:{data['server']['port']}"
        self.metrics_url = (
            f"http://127.0.0.1:{data['metrics']['port']}{data['metrics'].get('path', '/metrics')}"
        )

    def start(self, wait: bool = True) -> AgentProcess:
        logf = self.log_path.open("ab")
        cmd = [sys.executable, "-m", "log_capturer", "run", "--config", str(self.config), "--no-status"]
        if self.fd_limit:
            # Lower the soft descriptor limit, then exec the agent (no preexec_fn: threads are running).
            launcher = (
                "import os, resource, sys; "
                "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
                "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), hard)); "
                "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
            )
            cmd = [sys.executable, "-c", launcher, str(self.fd_limit), *cmd[1:]]
        self.proc = subprocess.Popen(
            cmd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=REPO,
        )
        logf.close()
        if wait:
            wait_until(lambda: self._up() or self._dead(), 60, "the agent's API to answer")
            if self._dead():
                raise AssertionError(f"agent exited at start-up:\n{self.log()}")
        return self

    def open_fds(self) -> int:
        """Descriptors the agent process holds now (from /proc)."""
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def _dead(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def _up(self) -> bool:
        try:
            urllib.request.urlopen(self.api + "/stats", timeout=1).read()
            return True
        except OSError:
            return False

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(self.api + path, timeout=5) as r:
                return orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            return orjson.loads(exc.read())

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            return r.read().decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stacks = self.stacks()
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(
                f"agent did not stop within {timeout}s:\n{self.log()}\nits threads:\n{stacks}"
            ) from None

    def stacks(self) -> str:
        """Every thread's stack of the running agent (py-spy), to show where a hung agent waits."""
        assert self.proc is not None
        spy = Path(sys.executable).with_name("py-spy")
        try:
            out = subprocess.run(
                [str(spy), "dump", "--pid", str(self.proc.pid)],
                check=False,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"<py-spy dump failed: {exc}>"
        return out.stdout + out.stderr

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self, tail: int = 200) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
        except OSError:
            return "<no log>"


class Server(Protocol):
    """A local server of ``log_capturer.devtools`` (Kafka, OpenSearch, VictoriaLogs, nginx...)."""

    def up(self, timeout: float = ...) -> object: ...

    def down(self) -> object: ...


ServerT = TypeVar("ServerT", bound=Server)


def started(server: ServerT, what: str, error: type[Exception], timeout: float | None = None) -> ServerT:
    """``server`` started (``timeout``: None for its own default); if it does not start (``error``),
    it is stopped and the test fails, never skips, with what it said (its log)."""
    try:
        if timeout is None:
            server.up()
        else:
            server.up(timeout=timeout)
    except error as exc:
        server.down()
        pytest.fail(f"{what} did not start:\n{exc}", pytrace=False)
    return server
