"""``log-capturer demo``: the whole path on one machine, file -> agent -> Kafka -> consumer ->
VictoriaLogs, started with one command and stopped with Ctrl-C.

It starts (or finds running) the local Kafka broker (:mod:`.kafka_local`, ``log-capturer kafka
up``) and VictoriaLogs (:mod:`.victorialogs_local`), creates the log topics, then runs two
``log-capturer run`` processes: the agent (``configs/demo-agent.yaml``) tailing ``./data/logs``
into Kafka, and the consumer (``configs/consumer-loki.yaml``) reading the topics into
VictoriaLogs through its Loki push API. Each runs a copy of its config with the demo's brokers,
VictoriaLogs URL, topics and directories filled in (``data/demo/agent.yaml``,
``data/demo/consumer.yaml``; their logs beside them).

On stop (Ctrl-C, SIGTERM): the agent drains, then the consumer (its offsets committed), then the
servers the demo started itself; servers that were already running are left running.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from log_capturer.devtools.kafka_local import LocalKafka, free_port
from log_capturer.devtools.topics import TOPICS, TopicSpec, create_topics
from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs

#: The topics the agent ships to and the consumer reads (the design document's log topics).
LOG_TOPICS = ("logs", "logs-high-priority", "logs-normal-priority", "logs-low-priority")
#: What the demo prints as a query to try (LogsQL: every record of the demo's consumer).
QUERY = '{job="log-capturer-consumer"}'


class DemoError(RuntimeError):
    """The demo could not start (the message says what to do)."""


@dataclass
class Process:
    """One ``log-capturer run`` of the demo."""

    name: str
    config: Path
    log_path: Path
    api: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        try:
            # Its own session: Ctrl-C in the terminal reaches the demo only, which stops the
            # processes in order (the agent drains into Kafka before the consumer stops).
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "log_capturer", "run", "--config", str(self.config), "--no-status"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.api + "/health", timeout=2) as r:
                status = orjson.loads(r.read()).get("status")
        except urllib.error.HTTPError as exc:
            status = orjson.loads(exc.read() or b"{}").get("status")
        except (OSError, ValueError):
            return False
        return status in ("healthy", "degraded")

    def stop(self, timeout: float) -> int | None:
        """SIGTERM (the agent's graceful drain), SIGKILL after ``timeout``; its exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Demo:
    """The demo's servers and processes (see the module docstring)."""

    logs: Path = Path("data/logs")
    directory: Path = Path("data/demo")
    agent_template: Path = Path("configs/demo-agent.yaml")
    consumer_template: Path = Path("configs/consumer-loki.yaml")
    kafka: LocalKafka = field(default_factory=LocalKafka)
    victorialogs: LocalVictoriaLogs = field(default_factory=LocalVictoriaLogs)
    #: Prefix of the demo's topic names and consumer group (a shared broker: keep them apart).
    topic_prefix: str = ""
    #: The agent's and the consumer's API and metrics on free ports instead of their configs'.
    free_ports: bool = False
    log: Callable[[str], None] = print
    started_kafka: bool = False
    started_victorialogs: bool = False
    agent: Process | None = None
    consumer: Process | None = None

    # -- start ---------------------------------------------------------------------------------
    def up(self, timeout: float = 120.0) -> None:
        """Servers, topics, configs, then the consumer and the agent, each answering /health."""
        for template in (self.agent_template, self.consumer_template):
            if not template.is_file():
                raise DemoError(f"{template} not found: run the demo from the project's directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.logs / "app.log").touch()  # followed from the start: an appended line leaves at once
        was_up = self.kafka.status().get("state") == "up"
        self.log("starting the local Kafka broker" if not was_up else "the local Kafka broker is running")
        bootstrap = self.kafka.up(timeout)
        self.started_kafka = not was_up
        was_up = self.victorialogs.pid() is not None and self.victorialogs.answers()
        self.log("starting VictoriaLogs" if not was_up else "VictoriaLogs is running")
        self.victorialogs.up(timeout)
        self.started_victorialogs = not was_up
        specs = tuple(
            TopicSpec(self.topic_prefix + s.name, s.partitions, s.retention_days, s.purpose)
            for s in TOPICS
            if s.name in (*LOG_TOPICS, "logs-dlq")
        )
        try:
            create_topics(bootstrap, topics=specs)
        except Exception as exc:  # KafkaException and friends: say what failed, no traceback
            raise DemoError(f"cannot create the demo's topics at {bootstrap}: {exc}") from None
        try:
            agent_cfg, consumer_cfg = self.configs(bootstrap)
        except (yaml.YAMLError, AttributeError, TypeError) as exc:
            raise DemoError(
                f"{self.agent_template} or {self.consumer_template} is not a config the demo can "
                f"fill in ({exc}); restore it from the repository"
            ) from None
        self.consumer = self._process("consumer", consumer_cfg)
        self.agent = self._process("agent", agent_cfg)
        deadline = time.monotonic() + timeout
        for p in (self.consumer, self.agent):
            p.start()
        for p in (self.consumer, self.agent):
            while not p.healthy():
                if not p.running():
                    raise DemoError(f"the {p.name} exited during start-up; its log:\n{p.log_tail()}")
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"the {p.name} did not answer on {p.api} in time; its log:\n{p.log_tail()}"
                    )
                time.sleep(0.2)

    def _process(self, name: str, config: dict[str, Any]) -> Process:
        path = self.directory / f"{name}.yaml"
        template = self.agent_template if name == "agent" else self.consumer_template
        path.write_text(
            f"# Written by `log-capturer demo` from {template}.\n" + yaml.safe_dump(config, sort_keys=False)
        )
        api = f"http://127.0.0.1:{config['server']['port']}"
        return Process(name, path, self.directory / f"{name}.log", api)

    def configs(self, bootstrap: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The agent's and the consumer's configs: the templates with the demo's brokers,
        VictoriaLogs, topics, directories (and ports, with ``free_ports``)."""
        prefix = self.topic_prefix
        brokers = bootstrap.split(",")
        state = self.directory.resolve()
        agent: dict[str, Any] = yaml.safe_load(self.agent_template.read_text())
        agent.setdefault("files_config", {})["watch_directories"] = [str(self.logs.resolve())]
        kafka = agent.setdefault("sinks", {}).setdefault("kafka", {})
        kafka["brokers"] = brokers
        kafka["topic"] = prefix + "logs"
        kafka["priority_routing"] = {
            **kafka.get("priority_routing", {}),
            "high_topic": prefix + "logs-high-priority",
            "normal_topic": prefix + "logs-normal-priority",
            "low_topic": prefix + "logs-low-priority",
        }
        kafka["dlq_config"] = {**kafka.get("dlq_config", {}), "topic": prefix + "logs-dlq"}
        consumer: dict[str, Any] = yaml.safe_load(self.consumer_template.read_text())
        source = consumer.setdefault("kafka", {})
        source.update(
            enabled=True,
            brokers=brokers,
            topics=[prefix + t for t in LOG_TOPICS],
            group_id=prefix + str(source.get("group_id", "log-capturer-loki")),
        )
        loki = consumer.setdefault("sinks", {}).setdefault("loki", {})
        loki["url"] = self.victorialogs.url
        for name, cfg in (("agent", agent), ("consumer", consumer)):
            cfg.setdefault("positions", {})["directory"] = str(state / name / "positions")
            dispatcher = cfg.setdefault("dispatcher", {})
            dlq = {**dispatcher.get("dlq_config", {}), "directory": str(state / name / "dlq")}
            dispatcher["dlq_config"] = dlq
            if self.free_ports:
                cfg["server"] = {**cfg.get("server", {}), "host": "127.0.0.1", "port": free_port()}
                cfg["metrics"] = {**cfg.get("metrics", {}), "host": "127.0.0.1", "port": free_port()}
        return agent, consumer

    # -- while running ---------------------------------------------------------------------------
    def exited(self) -> Process | None:
        """A process of the demo that stopped on its own, if any."""
        return next((p for p in (self.agent, self.consumer) if p is not None and not p.running()), None)

    def web_ui(self) -> str:
        """VictoriaLogs' web UI (vmui)."""
        return f"{self.victorialogs.url}/select/vmui/"

    def query(self, logsql: str, limit: int = 100) -> list[dict[str, Any]]:
        """Records of VictoriaLogs matching ``logsql`` (its /select/logsql/query API)."""
        body = urllib.parse.urlencode({"query": logsql, "limit": limit}).encode()
        with urllib.request.urlopen(self.victorialogs.url + "/select/logsql/query", body, timeout=10) as r:
            return [orjson.loads(line) for line in r.read().splitlines() if line.strip()]

    # -- stop ----------------------------------------------------------------------------------
    def down(self, timeout: float = 60.0) -> dict[str, int | None]:
        """The agent (drained into Kafka), the consumer (its offsets committed), then the servers
        the demo started. Each process's exit status."""
        statuses: dict[str, int | None] = {}
        for p in (self.agent, self.consumer):
            if p is not None:
                self.log(f"stopping the {p.name}")
                statuses[p.name] = p.stop(timeout)
        if self.started_victorialogs:
            self.log("stopping VictoriaLogs")
            self.victorialogs.stop()
        if self.started_kafka:
            self.log("stopping the local Kafka broker")
            self.kafka.down()
        return statuses


def wait_for_signal(demo: Demo, stop: threading.Event, poll: float = 0.5) -> Process | None:
    """Until ``stop`` is set (the signal handler) or a process of the demo exits (returned)."""
    while not stop.wait(poll):
        gone = demo.exited()
        if gone is not None:
            return gone
    return None
