"""Rotation torture: a full-speed writer, rename and copytruncate rotations, restarts; real Kafka.

200,000 lines are written as fast as Python can while the file is rotated by
rename every 20,000 lines and by copytruncate every 30,000 (logrotate's
naming: app.log.1, app.log.2, ...). The agent is stopped cleanly while it is
still behind (rotated files not fully read) and started again; then, once
every line arrived, stopped and started once more. Every line must be in
Kafka exactly once. A second run paces the writer (20,000 lines/s) so that
the rotations happen while the agent follows the file, and while it is
stopped. A third run kills the agent (SIGKILL) while rotated files are
draining: nothing may be missing; what was in flight may come twice
(at-least-once), and the count is printed.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support import (
    AgentProcess,
    Rec,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

TOTAL = 200_000
RENAME_EVERY = 20_000
COPYTRUNCATE_EVERY = 30_000


def line(i: int) -> str:
    return f"{i:07d} torture line {'.' * (i * 7919 % 97)}\n"


def shift(log: Path) -> None:
    """app.log.N -> app.log.N+1, oldest first, as logrotate does."""
    n = 1
    while log.with_name(f"{log.name}.{n}").exists():
        n += 1
    for k in range(n - 1, 0, -1):
        log.with_name(f"{log.name}.{k}").rename(log.with_name(f"{log.name}.{k + 1}"))


def writer(log: Path, progress: list[int], rotations: Counter[str], rate: int | None) -> None:
    f = log.open("a", buffering=1 << 16)
    started = time.monotonic()
    try:
        for i in range(TOTAL):
            if rate and i % 1000 == 0:
                f.flush()
                time.sleep(max(0.0, started + i / rate - time.monotonic()))
            if i and i % RENAME_EVERY == 0:
                f.close()
                shift(log)
                log.rename(log.with_name(log.name + ".1"))
                f = log.open("a", buffering=1 << 16)
                rotations["rename"] += 1
            elif i and i % COPYTRUNCATE_EVERY == 0:
                f.flush()
                shift(log)
                shutil.copyfile(log, log.with_name(log.name + ".1"))
                with log.open("r+b") as t:
                    t.truncate(0)
                rotations["copytruncate"] += 1
            f.write(line(i))
            progress[0] = i + 1
    finally:
        f.close()


def tally(records: list[Rec]) -> tuple[Counter[int], list[str]]:
    seen: Counter[int] = Counter()
    sources = set()
    for r in records:
        doc = r.json()
        seen[int(doc["message"][:7])] += 1
        sources.add(doc["source_id"])
    return seen, sorted(sources)


def ranges(values: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][1] == v - 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def report(phase: str, seen: Counter[int]) -> tuple[int, int]:
    dups = sum(n - 1 for n in seen.values() if n > 1)
    missing = TOTAL - len([k for k in seen if 0 <= k < TOTAL])
    print(f"[{phase}] records={sum(seen.values())} distinct={len(seen)} duplicates={dups} missing={missing}")
    return dups, missing


@pytest.mark.parametrize(
    ("rate", "crash"), [(None, False), (20_000, False), (20_000, True)], ids=["full-speed", "paced", "crash"]
)
def test_rotation_torture_every_line_once_across_restarts(
    tmp_path: Path, bootstrap: str, topic_prefix: str, rate: int | None, crash: bool
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = write_config(
        tmp_path / "config.yaml",
        agent_config(
            tmp_path,
            bootstrap,
            topics,
            files_config={"read_buffer_bytes": 262144},
            dispatcher={"queue_size": 20000},
        ),
    )
    log = tmp_path / "logs" / "app.log"
    log.touch()
    agent = AgentProcess(cfg, tmp_path / "agent-1.log").start()
    agents = [agent]
    progress = [0]
    rotations: Counter[str] = Counter()
    w = threading.Thread(target=writer, args=(log, progress, rotations, rate), daemon=True)
    try:
        w.start()
        # Stop while the agent is well behind the writer: rotated files are still being read.
        wait_until(lambda: agent.get("/stats")["files"]["lines_read"] >= 40_000, 120, "40,000 lines read")
        stats = agent.get("/stats")["files"]
        print(f"stopping agent 1 at writer={progress[0]} read={stats['lines_read']} stats={stats}")
        if crash:
            agent.kill()
        else:
            assert agent.stop(signal.SIGTERM) == 0, agent.log()
        agent = AgentProcess(cfg, tmp_path / "agent-2.log").start()  # the writer may still be going
        agents.append(agent)
        w.join(120)
        assert not w.is_alive()
        print(f"writer done: {TOTAL} lines, rotations={dict(rotations)}")
        deadline = time.monotonic() + 300
        while True:  # until every line arrived, or the deadline
            seen, sources = tally(consume_all(bootstrap, topics.values(), expected=TOTAL, timeout=30))
            if len(seen) >= TOTAL or time.monotonic() > deadline:
                break
            time.sleep(1)
        dups, missing = report("after restart during rotations", seen)
        if missing:
            print(f"missing ranges: {ranges([i for i in range(TOTAL) if i not in seen])[:20]}")
        assert sources == [str(log)]
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
        # A clean restart must send nothing again.
        agent = AgentProcess(cfg, tmp_path / "agent-3.log").start()
        agents.append(agent)
        wait_until(lambda: agent.get("/stats")["files"]["monitored"] >= 1, 60, "agent 3 following app.log")
        time.sleep(3)  # several rescans and polls
        assert agent.get("/stats")["files"]["lines_read"] == 0
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
        final, _ = tally(consume_all(bootstrap, topics.values()))
        dups3, missing3 = report("after a clean stop and restart", final)
        events = Counter(
            event
            for a in agents
            for event in (
                "reading the old file to its end",
                "continuing the old content in its copy",
                "rotated away between two looks",
                "resuming a rotated file",
                "reading it again",
            )
            for _ in range(a.log(tail=100000).count(event))
        )
        print(f"agent events: {dict(events)}")
        assert missing == 0, "lines lost across rotations and a restart"
        assert dups == 0 or crash, "lines duplicated across rotations and a clean restart"
        assert missing3 == 0 and dups3 == dups, "the last clean restart sent lines again"
        assert rotations == Counter({"rename": 9, "copytruncate": 3})
    finally:
        for a in agents:
            if a.proc and a.proc.poll() is None:
                a.kill()
