"""A broker of this folder's own, which the fault tests stop and start; helpers to drive the agent."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from log_capturer.devtools.kafka_local import LocalKafka, LocalKafkaError, free_port
from tests.support import REPO, AgentProcess, Rec, started


@pytest.fixture(scope="package")
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A single-node broker only this folder's tests use (they stop it); fails with its log."""
    cluster = LocalKafka(
        tmp_path_factory.mktemp("own-kafka"), port=free_port(), controller_ports=[free_port()], log=print
    )
    started(cluster, "the Kafka broker", LocalKafkaError, timeout=120)
    yield cluster
    cluster.down()


def own_bootstrap(cluster: LocalKafka) -> str:
    state = cluster.load_state()
    assert state is not None
    return state.bootstrap


def broker_running(cluster: LocalKafka) -> bool:
    state = cluster.load_state()
    return state is not None and all(n.pid is not None for n in state.nodes)


def leave_clean(writer: subprocess.Popen[bytes], agent: AgentProcess, cluster: LocalKafka) -> None:
    """Whatever the test did: the load generator and the agent stopped, the broker running."""
    writer.kill()
    if agent.proc is not None and agent.proc.poll() is None:
        agent.kill()
    if not broker_running(cluster):
        cluster.start_node(1, timeout=120)


def generate(
    path: Path, rate: float, *, duration: float = 0, count: int = 0, seed: int = 1
) -> subprocess.Popen[bytes]:
    """The project's load generator appending JSON lines (each with its ``seq``) to ``path``."""
    cmd = [sys.executable, "-m", "log_capturer", "generate", "--target", "file", "--output", str(path)]
    cmd += ["--rate", str(rate), "--duration", str(duration), "--seed", str(seed), "--no-progress"]
    if count:
        cmd += ["--count", str(count)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def seqs(records: list[Rec]) -> Counter[int]:
    """How often each generated sequence number arrived."""
    return Counter(int(orjson.loads(r.json()["message"])["seq"]) for r in records)


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample of a Prometheus text exposition (labels must match exactly those given)."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not m:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    return None


class Watcher:
    """Samples the agent's breaker state and health while a test runs (a daemon thread)."""

    def __init__(self, agent: AgentProcess, interval: float = 0.5) -> None:
        self.agent = agent
        self.interval = interval
        self.breaker: list[float] = []
        self.health: list[str] = []
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                state = metric(self.agent.metrics(), "kafka_circuit_breaker_state", sink_name="kafka")
                health = self.agent.get("/health")
            except OSError:
                continue
            if state is not None and (not self.breaker or self.breaker[-1] != state):
                self.breaker.append(state)
            self.health.append(str(health.get("status")))
            sink = health["services"]["sinks"][0]
            if sink["status"] != "healthy":
                self.messages.append(str(sink["message"]))


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")
