"""A stalled sink: backpressure holds the sources within the memory budget; SIGTERM drains and exits;
a restart delivers everything once Kafka is back."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from log_capturer.devtools.kafka_local import LocalKafka, free_port
from tests.integration.reliability.conftest import (
    broker_running,
    generate,
    metric,
    own_bootstrap,
    rss_bytes,
    seqs,
)
from tests.integration.reliability.test_dlq_replay import shipped_topics
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

LINES = 600_000
#: The memory budget stated in the README for the default queue sizes and 150-byte lines.
BUDGET = 200 * 1024 * 1024


def test_a_stalled_sink_holds_the_sources_within_the_memory_budget_and_loses_nothing(
    tmp_path: Path, own_kafka: LocalKafka, topic_prefix: str
) -> None:
    bootstrap = own_bootstrap(own_kafka)
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    log = tmp_path / "logs" / "app.log"
    (tmp_path / "logs").mkdir(parents=True)
    assert generate(log, 0, count=LINES).wait(300) == 0
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        dispatcher={"drain_timeout": "5s"},
        # timeout well beyond the 25 s of stall and the 5 s drain: records that reach it are parked
        # in the local DLQ (send_on_timeout), which would move the checkpoint legitimately.
        sinks={"kafka": {"timeout": "120s", "backpressure_config": {"timeout_escalation": False}}},
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    own_kafka.stop_node(1)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        assert agent.proc is not None
        peak = 0
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            peak = max(peak, rss_bytes(agent.proc.pid))
            time.sleep(0.25)
        stats = agent.get("/stats")
        health = agent.get("/health")
        metrics = agent.metrics()
        stopping = time.monotonic()
        code = agent.stop(signal.SIGTERM, timeout=60)
        stop_seconds = time.monotonic() - stopping
        positions = json.loads((tmp_path / "positions" / "files.json").read_text())
        own_kafka.start_node(1, timeout=120)
        agent = AgentProcess(path, tmp_path / "agent2.log").start()
        records = consume_all(bootstrap, shipped_topics(topics), expected=LINES, timeout=240)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
        if not broker_running(own_kafka):
            own_kafka.start_node(1, timeout=120)
    sink = stats["sinks"]["kafka_sink"]
    summary = {
        "peak_rss_mib": round(peak / 1048576, 1),
        "lines_read_while_stalled": stats["files"]["lines_read"],
        "dispatcher_queue": stats["dispatcher"]["queue_size"],
        "sink_outstanding": sink["outstanding"],
        "stop_seconds": round(stop_seconds, 1),
        "breaker": sink["circuit_breaker"]["state"],
    }
    print(json.dumps(summary))
    assert peak <= BUDGET, summary
    # Held, not buffered: far less than the file was read, and nothing was acknowledged.
    assert stats["files"]["lines_read"] < LINES / 2, summary
    assert metric(metrics, "kafka_backpressure_events_total", threshold_level="critical") >= 1
    assert sink["circuit_breaker"]["state"] == "open"
    assert health["status"] == "unhealthy"
    assert code == 0
    [entry] = positions["positions"].values()
    assert entry["offset"] == 0, entry
    counts = seqs(records)
    assert len(counts) == LINES and sum(counts.values()) == LINES, "lost or duplicated lines"
    assert sink["parked"] == 0


def test_with_open_action_dlq_lines_are_parked_while_the_breaker_is_open_and_replayed_after(
    tmp_path: Path, own_kafka: LocalKafka, topic_prefix: str
) -> None:
    bootstrap = own_bootstrap(own_kafka)
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        sinks={
            "kafka": {
                "circuit_breaker": {"failure_threshold": 3, "timeout": "10s", "open_action": "dlq"},
                "dlq_config": {"send_on_timeout": False},
            }
        },
        dispatcher={
            "dlq_config": {
                "reprocessing_config": {"interval": "1s", "initial_delay": "0s", "min_entry_age": "0s"}
            }
        },
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    own_kafka.stop_node(1)
    log = tmp_path / "logs" / "app.log"
    log.write_text("INFO before the breaker opens\n")
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(
            lambda: agent.get("/stats")["sinks"]["kafka_sink"]["circuit_breaker"]["state"] == "open",
            60,
            "the breaker to open",
        )
        with log.open("a") as f:
            f.writelines(f"WARN while open {i}\n" for i in range(500))
        wait_until(lambda: agent.get("/dlq/stats")["entries"] == 500, 30, "the lines parked")
        parked = agent.get("/dlq/stats")
        positions = agent.get("/positions")["files"]
        # Kafka is back: the breaker closes after its trial calls, the first line is delivered,
        # and the reprocessor replays the parked lines.
        own_kafka.start_node(1, timeout=120)
        records = consume_all(bootstrap, shipped_topics(topics), expected=501, timeout=120)
        wait_until(lambda: agent.get("/dlq/stats")["entries"] == 0, 60, "the DLQ replayed")
        wait_until(
            lambda: next(iter(agent.get("/positions")["files"].values()))["offset"] == log.stat().st_size,
            30,
            "the checkpoint to pass the parked lines",
        )
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
        if not broker_running(own_kafka):
            own_kafka.start_node(1, timeout=120)
    assert parked["by_reason"] == {"circuit_open": 500}, parked
    # The first line waits in the producer (no timeout: send_on_timeout is off), so the checkpoint
    # stays before it, although the 500 parked lines behind it count as acknowledged.
    [pos] = positions.values()
    assert pos["offset"] == 0, pos
    messages = sorted(r.json()["message"] for r in records)
    assert messages == sorted(
        ["INFO before the breaker opens", *(f"WARN while open {i}" for i in range(500))]
    )


@pytest.mark.parametrize("emergency", [0.95, 1.0])
def test_each_backpressure_level_acts_on_a_stalled_sink(
    emergency: float, tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """A file read in small chunks while nothing acknowledges, without ``timeout_escalation``:
    - warning (0.75): logged and counted;
    - critical (0.90): the sources are held: far fewer lines are read than the file has;
    - emergency (0.95): chunks wait at that level and, once the sink has acknowledged nothing for
      ``timeout``, overflow to the local DLQ with the reason ``backpressure``, counted;
    - with the emergency threshold at 1.0 the overflow is off: lines wait at the queue's capacity
      and nothing reaches the DLQ however long the stall lasts (an outage that keeps the order)."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    queue_size = 2_000
    total = 20_000
    lines = [f"WARN stalled line {i:06d} " + "x" * 120 for i in range(total)]
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there: the sink is stalled from the start
    kafka = {
        "brokers": [nowhere],
        "queue_size": queue_size,
        "timeout": "1s",
        "dlq_config": {"send_on_timeout": False},
        "backpressure_config": {"timeout_escalation": False, "queue_emergency_threshold": emergency},
        "circuit_breaker": {"enabled": False},
    }
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        # Chunks of about 30 lines; the dispatcher queue holds fewer lines than the file has.
        files_config={**agent_config(tmp_path, bootstrap, topics)["files_config"], "read_buffer_bytes": 8192},
        dispatcher={
            "drain_timeout": "1s",
            "queue_size": 3_000,
            "dlq_config": {"directory": str(tmp_path / "dlq"), "reprocessing_config": {"enabled": False}},
        },
        sinks={"kafka": kafka},
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    (tmp_path / "logs" / "app.log").write_text("".join(f"{line}\n" for line in lines))
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    held: list[int] = []
    try:
        wait_until(
            lambda: agent.get("/stats")["sinks"]["kafka_sink"]["outstanding"] > 0, 60, "the first chunk"
        )
        for _ in range(24):  # 6 s: six times the stall timeout
            held.append(agent.get("/stats")["sinks"]["kafka_sink"]["outstanding"])
            time.sleep(0.25)
        stats = agent.get("/stats")
        metrics = agent.metrics()
        dlq = agent.get("/dlq/stats")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    sink = stats["sinks"]["kafka_sink"]
    summary = {
        "emergency": emergency,
        "held_max": max(held),
        "peak_utilization": sink["backpressure"]["peak_utilization"],
        "parked": sink["parked"],
        "overflowed": sink["overflowed_to_dlq"],
        "dlq": dlq.get("by_reason"),
        "lines_read": stats["files"]["lines_read"],
    }
    print(json.dumps(summary))

    def events(level: str) -> float:
        return metric(metrics, "kafka_backpressure_events_total", threshold_level=level) or 0.0

    assert events("warning") >= 1 and "sink queue at warning level" in agent.log(), summary
    assert events("critical") >= 1, summary
    # Held, not buffered: the sources stopped reading long before the end of the file.
    assert stats["files"]["lines_read"] < total / 2, summary
    assert max(held) <= emergency * queue_size, summary
    saved = json.loads((tmp_path / "positions" / "files.json").read_text())["positions"]
    if emergency < 1.0:
        assert events("emergency") >= 1, summary
        assert sink["overflowed_to_dlq"] > 0 and sink["parked"] == sink["overflowed_to_dlq"], summary
        assert dlq["by_reason"] == {"backpressure": sink["overflowed_to_dlq"]}, summary
    else:
        assert events("emergency") == 0, summary
        assert sink["parked"] == 0 and sink["overflowed_to_dlq"] == 0, summary
        # Nothing was acknowledged, so nothing was checkpointed.
        assert [e["offset"] for e in saved.values()] == [0]
