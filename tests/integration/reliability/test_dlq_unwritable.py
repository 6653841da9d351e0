"""The DLQ directory is unwritable, or full: clear error, unhealthy, no crash, nothing lost (test 4)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.integration.reliability.test_dlq_replay import cli, shipped_topics
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


def test_an_unwritable_dlq_holds_the_lines_until_it_can_be_written(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where the DLQ directory's parent should be\n")
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        sinks={"kafka": {"max_message_bytes": 4096}},
        dispatcher={"queue_size": 500, "dlq_config": {"directory": str(blocker / "dlq")}},
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    big = "ERROR " + "too large " * 600
    log = tmp_path / "logs" / "app.log"
    log.write_text("INFO first\n" + big + "\nINFO second\n")
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: agent.get("/health")["status"] == "unhealthy", 30, "health to turn unhealthy")
        with log.open("a") as f:
            f.writelines(f"INFO later {i}\n" for i in range(3000))
        time.sleep(3)
        held = {
            "health": agent.get("/health"),
            "positions": agent.get("/positions")["files"],
            "alive": agent.proc is not None and agent.proc.poll() is None,
        }
        blocker.unlink()  # fix it: the directory can be created now
        records = consume_all(bootstrap, shipped_topics(topics), expected=3002)
        wait_until(lambda: agent.get("/health")["status"] == "healthy", 30, "health to recover")
        wait_until(
            lambda: next(iter(agent.get("/positions")["files"].values()))["offset"] == log.stat().st_size,
            30,
            "the checkpoint to reach the end of the file",
        )
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    assert held["alive"]
    sink = held["health"]["services"]["sinks"][0]
    assert sink["status"] == "unhealthy", sink
    assert "cannot park records in the local DLQ" in sink["message"]
    assert "dispatcher.dlq_config.directory" in sink["message"]
    dlq_check = held["health"]["checks"]["dlq"]
    assert dlq_check["status"] == "unhealthy" and "Not a directory" in dlq_check["message"], dlq_check
    # Nothing was acknowledged past the line that could not be parked.
    [pos] = held["positions"].values()
    assert pos["offset"] == 0, pos
    assert "cannot park 1 records in the local DLQ" in agent.log(tail=100000)
    messages = [r.json()["message"] for r in records]
    assert sorted(messages) == sorted(
        ["INFO first", "INFO second", *(f"INFO later {i}" for i in range(3000))]
    )
    parked = [
        json.loads(x)
        for f in sorted((blocker / "dlq").glob("dlq_entry_*.json"))
        for x in f.read_text().splitlines()
    ]
    assert [e["original_entry"]["message"] for e in parked] == [big]


def test_a_full_dlq_applies_backpressure_until_entries_are_replayed(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        files_config={"read_buffer_bytes": 65536},
        sinks={"kafka": {"max_message_bytes": 100_000}},
        dispatcher={
            "queue_size": 500,
            "dlq_config": {"max_size_mb": 1, "max_files": 2, "reprocessing_config": {"enabled": False}},
        },
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    cfg["sinks"]["kafka"]["max_message_bytes"] = 1_000_000
    raised = write_config(tmp_path / "raised.yaml", cfg)
    bigs = [f"ERROR big {i} " + "z" * 200_000 for i in range(8)]
    lines: list[str] = []
    for i, b in enumerate(bigs):
        lines.append(b)
        lines.extend(f"INFO normal {i}-{j}" for j in range(100))
    (tmp_path / "logs" / "app.log").write_text("".join(f"{x}\n" for x in lines))
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: agent.get("/dlq/stats")["full"], 60, "the DLQ to be full")
        full = agent.get("/health")
        first = cli("dlq", "replay", "-c", str(raised), "--no-progress")
        # Room again: the agent parks the rest; replay those too.
        wait_until(lambda: agent.get("/dlq/stats")["entries"] >= 1, 60, "the next parked lines")
        wait_until(
            lambda: agent.get("/stats")["files"]["in_flight_lines"] == 0 or agent.get("/dlq/stats")["full"],
            60,
            "the agent to park what fits",
        )
        second = cli("dlq", "replay", "-c", str(raised), "--no-progress")
        records = consume_all(bootstrap, shipped_topics(topics), expected=len(lines), timeout=120)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    sink = full["services"]["sinks"][0]
    assert sink["status"] == "unhealthy" and "is full" in sink["message"], sink
    assert "max_size_mb=1, max_files=2" in full["checks"]["dlq"]["message"]
    assert first.returncode == 0 and second.returncode == 0, first.stdout + second.stdout
    got = sorted(r.json()["message"] for r in records)
    assert got == sorted(lines), f"{len(got)} records for {len(lines)} lines"
