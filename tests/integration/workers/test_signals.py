"""Signals to a multi-process agent: SIGTERM drains every worker; a worker killed is restarted."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.reliability.conftest import metric
from tests.integration.workers.conftest import (
    ROUTED,
    files_for_workers,
    generate,
    missing_and_duplicated,
)
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

LINES = 60_000
RATE = 4000
#: Small queues: the window of lines read but not yet checkpointed is small and known.
DISPATCHER_QUEUE = 2000
PRODUCER_QUEUE = 2000
FLUSH_INTERVAL = 0.1


def _config(tmp_path: Path, bootstrap: str, topics: dict[str, str]) -> Path:
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        app={"workers": 2},
        # The agent-wide queue sizes: each worker gets half.
        dispatcher={"queue_size": 2 * DISPATCHER_QUEUE, "batch_size": 500},
        sinks={"kafka": {"queue_size": 2 * PRODUCER_QUEUE}},
        positions={"flush_interval": f"{int(FLUSH_INTERVAL * 1000)}ms"},
    )
    return write_config(tmp_path / "config.yaml", cfg)


def _log_events(path: Path) -> list[dict[str, Any]]:
    """The agent's JSON log lines (workers' and supervisor's; other lines skipped)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(orjson.loads(line))
    return out


def test_sigterm_drains_every_worker_and_exits_0_then_a_restart_sends_the_rest_once(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    path = _config(tmp_path, bootstrap, topics)
    files = files_for_workers(tmp_path / "logs", 2, 2)
    writer = generate(files, LINES, rate=RATE)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: agent.get("/stats")["files"]["lines_read"] > 5000, 60, "lines flowing")
        started = time.monotonic()
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
        stopped_in = time.monotonic() - started
        # Both workers drained before the supervisor exited: each says so in its own log line.
        events = _log_events(tmp_path / "agent.log")
        drained = [e.get("worker") for e in events if e["message"].startswith("worker stopped cleanly")]
        assert sorted(drained) == [0, 1]
        assert events[-1]["logger"] == "log_capturer.supervisor" and events[-1]["message"] == "stopped"
        assert writer.wait(120) == 0
        agent = AgentProcess(path, tmp_path / "agent.log").start()
        records = consume_all(bootstrap, [topics[t] for t in ROUTED], expected=LINES)
        wait_until(lambda: agent.get("/stats")["files"]["in_flight_lines"] == 0, 60, "acknowledgements")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        writer.kill()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    missing, duplicated = missing_and_duplicated(records, files)
    print(
        json.dumps({"lines": LINES, "missing": len(missing), "duplicated": duplicated, "stop_s": stopped_in})
    )
    assert not missing, f"{len(missing)} lines lost, e.g. {missing[:2]}"
    # The drain acknowledged and checkpointed every line read: the restart re-sent none.
    assert duplicated == 0


def test_a_worker_killed_with_sigkill_is_restarted_and_nothing_is_lost(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    path = _config(tmp_path, bootstrap, topics)
    files = files_for_workers(tmp_path / "logs", 2, 2)
    writer = generate(files, LINES, rate=RATE)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: agent.get("/stats")["files"]["lines_read"] > 8000, 60, "lines flowing")
        before = agent.get("/stats")["workers"]
        victim = before[1]["pid"]
        other = before[0]["pid"]
        os.kill(victim, signal.SIGKILL)

        def worker_1() -> dict[str, object]:
            return agent.get("/health")["checks"]["workers"]["workers"][1]  # type: ignore[no-any-return]

        # While it is down the agent says so (degraded, 503), then it runs again under a new pid.
        wait_until(lambda: worker_1()["state"] != "running", 30, "the supervisor to notice")
        assert agent.get("/health")["status"] in ("degraded", "unhealthy")
        wait_until(lambda: worker_1()["state"] == "running", 60, "worker 1 to be restarted")
        after = agent.get("/health")["checks"]["workers"]["workers"]
        assert after[1]["restarts"] == 1 and after[1]["last_exit"] == "killed by SIGKILL"
        assert after[1]["pid"] not in (None, victim) and (after[0]["pid"], after[0]["restarts"]) == (other, 0)
        assert metric(agent.metrics(), "worker_restarts_total", worker="1") == 1.0
        assert metric(agent.metrics(), "worker_restarts_total", worker="0") == 0.0
        assert metric(agent.metrics(), "worker_up", worker="1") == 1.0
        assert writer.wait(120) == 0
        records = consume_all(bootstrap, [topics[t] for t in ROUTED], expected=LINES)
        wait_until(lambda: agent.get("/stats")["files"]["in_flight_lines"] == 0, 60, "acknowledgements")
        assert agent.get("/health")["status"] == "healthy"
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        writer.kill()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    assert '"message":"worker died; restarting it from its saved positions"' in agent.log(2000)
    missing, duplicated = missing_and_duplicated(records, files)
    # What one kill can re-send: the killed worker's lines read but not in its saved positions,
    # at most its producer and dispatcher queues, one read buffer of lines and what was
    # acknowledged since its last positions flush.
    window = PRODUCER_QUEUE + DISPATCHER_QUEUE + (1 << 20) // 150 + int(RATE * FLUSH_INTERVAL * 4)
    print(json.dumps({"lines": LINES, "missing": len(missing), "duplicates": duplicated, "bound": window}))
    assert not missing, f"{len(missing)} lines lost, e.g. {missing[:2]}"
    assert duplicated <= window


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_when_the_supervisor_is_killed_its_workers_drain_and_a_new_agent_resumes(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    path = _config(tmp_path, bootstrap, topics)
    files = files_for_workers(tmp_path / "logs", 2, 2)
    writer = generate(files, LINES, rate=RATE)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: agent.get("/stats")["files"]["lines_read"] > 5000, 60, "lines flowing")
        pids = [w["pid"] for w in agent.get("/stats")["workers"]]
        agent.kill()  # SIGKILL: the supervisor has no chance to stop its workers
        # Their pipe from the supervisor ends: they drain and exit by themselves (no orphans).
        wait_until(lambda: not any(_alive(p) for p in pids), 60, "the orphaned workers to exit")
        events = _log_events(tmp_path / "agent.log")
        assert sorted(
            e["worker"] for e in events if e["message"] == "the supervisor is gone; draining and stopping"
        ) == [0, 1]
        assert sorted(
            e.get("worker") for e in events if e["message"].startswith("worker stopped cleanly")
        ) == [0, 1]
        agent = AgentProcess(path, tmp_path / "agent.log").start()
        assert writer.wait(120) == 0
        records = consume_all(bootstrap, [topics[t] for t in ROUTED], expected=LINES)
        wait_until(lambda: agent.get("/stats")["files"]["in_flight_lines"] == 0, 60, "acknowledgements")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        writer.kill()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    missing, duplicated = missing_and_duplicated(records, files)
    print(json.dumps({"lines": LINES, "missing": len(missing), "duplicated": duplicated}))
    assert not missing, f"{len(missing)} lines lost, e.g. {missing[:2]}"
    assert duplicated == 0  # the workers' own drain checkpointed every line they had read
