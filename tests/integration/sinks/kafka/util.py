"""Running the agent over one file and collecting what reached Kafka."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from log_capturer.config.schema import DispatcherConfig, DispatcherDLQConfig, KafkaSinkConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.processing import Analyzer
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.sinks.kafka.sink import KafkaSink
from tests.support import AgentProcess, Rec, agent_config, consume_all, write_config


def ship_lines(
    tmp: Path,
    bootstrap: str,
    topics: dict[str, str],
    lines: list[str],
    *,
    expected: int | None = None,
    timeout: float = 90,
    while_running: Callable[[AgentProcess], None] | None = None,
    **sections: Any,
) -> tuple[list[Rec], AgentProcess]:
    """Run the agent on a file of ``lines`` until ``expected`` records are in Kafka, then stop it.

    ``while_running(agent)`` runs after the records arrived and before the graceful stop.
    """
    cfg = agent_config(tmp, bootstrap, topics, **sections)
    path = write_config(tmp / "config.yaml", cfg)
    (tmp / "logs" / "app.log").write_text("".join(line + "\n" for line in lines))
    agent = AgentProcess(path, tmp / "agent.log").start()
    try:
        want = len(lines) if expected is None else expected
        records = consume_all(bootstrap, topics.values(), expected=want, timeout=timeout)
        if while_running is not None:
            while_running(agent)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    return records, agent


def dlq_entries(directory: Path) -> list[dict[str, Any]]:
    """Every entry of the local dead-letter store."""
    return [
        orjson.loads(line)
        for f in sorted(directory.glob("dlq_entry_*.json"))
        for line in f.read_bytes().splitlines()
        if line.strip()
    ]


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of one metric in a Prometheus text page whose labels include ``labels``
    (0 when there are none)."""
    total = 0.0
    pattern = rf"^{re.escape(name)}(?:\{{(?P<labels>[^}}]*)\}})? (?P<value>\S+)$"
    for m in re.finditer(pattern, text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"] or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m["value"])
    return total


def sink_and_dispatcher(
    bootstrap: str, topic: str, dlq: Path, native: bool, dispatcher: dict[str, Any], **sink: Any
) -> tuple[KafkaSink, Dispatcher]:
    """A started Kafka sink to ``topic`` (no priority routing, 50 ms batches, the local DLQ in
    ``dlq``; ``sink``: more of its keys) behind a started one-thread dispatcher (``dispatcher``:
    its keys)."""
    config = KafkaSinkConfig.model_validate(
        {
            "brokers": [bootstrap],
            "topic": topic,
            "priority_routing": {"enabled": False},
            "batch_timeout": "50ms",
            "native_producer": native,
            **sink,
        }
    )
    metrics = Metrics()
    store = DeadLetterStore(DispatcherDLQConfig.model_validate({"directory": str(dlq)}), metrics)
    kafka = KafkaSink(config, metrics, store)
    kafka.start()
    d = Dispatcher(
        DispatcherConfig.model_validate({"worker_count": 1, **dispatcher}), [kafka], Analyzer(None), metrics
    )
    d.start()
    return kafka, d
