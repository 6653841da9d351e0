"""``delivery: exactly_once`` with two workers against the real broker: each worker has its own
transactional id (``<id>-<index>``) and positions document; a worker killed with SIGKILL is
started again by the supervisor under the same id (which fences what its predecessor left open)
and resumes from its committed positions. Read back read_committed: every line once, each file's
lines in order."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import orjson
import pytest

from tests.integration.sinks.kafka.test_exactly_once import caught_up, eos_config, read_committed
from tests.integration.workers.conftest import (
    assert_file_order_per_partition,
    files_for_workers,
    generate,
    missing_and_duplicated,
)
from tests.support import AgentProcess, Rec, create_prefixed_topics, wait_until, write_config

pytestmark = pytest.mark.integration

LINES = 80_000
RATE = 2000


def test_two_workers_a_worker_killed_twice_read_committed_sees_every_line_once_in_order(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    tid = f"{topic_prefix}-eos"
    cfg = eos_config(tmp_path, bootstrap, topics, tid)
    cfg["app"] = {**cfg.get("app", {}), "workers": 2}
    path = write_config(tmp_path / "config.yaml", cfg)
    files = files_for_workers(tmp_path / "logs", 2, 2)
    writer = generate(files, LINES, rate=RATE)
    agent = AgentProcess(path, tmp_path / "agent.log").start()

    def worker(i: int) -> dict[str, object]:
        return agent.get("/health")["checks"]["workers"]["workers"][i]  # type: ignore[no-any-return]

    killed = []
    try:
        wait_until(lambda: agent.get("/stats")["files"]["lines_read"] > 8000, 60, "lines flowing")
        for victim, pause in ((1, 0.0), (1, 2.0), (0, 1.5)):
            time.sleep(pause)  # while lines flow: the writer runs for 40 s
            assert writer.poll() is None, "the writer ended before the kills"
            pid = worker(victim)["pid"]
            assert isinstance(pid, int)
            os.kill(pid, signal.SIGKILL)
            killed.append(victim)
            wait_until(lambda v=victim, p=pid: worker(v)["pid"] not in (None, p), 60, "the worker restarted")  # type: ignore[misc]
            wait_until(lambda v=victim: worker(v)["state"] == "running", 60, "the worker running")  # type: ignore[misc]
        assert writer.wait(120) == 0
        wait_until(lambda: caught_up(agent, files), 120, "every line read and acknowledged")
        # Each worker's own transactional id, the same after its restarts.
        ids = [
            w["stats"]["sinks"]["kafka_sink"]["transactions"]["transactional_id"]
            for w in agent.get("/stats")["workers"]
        ]
        assert ids == [f"{tid}-0", f"{tid}-1"]
        time.sleep(1)  # the last transactions commit
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        writer.kill()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    records = [
        Rec(m.topic(), m.partition(), m.offset(), m.key(), m.value())
        for m in read_committed(bootstrap, topics["logs"])
    ]
    missing, duplicated = missing_and_duplicated(records, files)
    print(json.dumps({"lines": LINES, "missing": len(missing), "duplicated": duplicated, "killed": killed}))
    assert not missing, f"{len(missing)} lines lost, e.g. {missing[:2]}"
    assert duplicated == 0
    assert_file_order_per_partition(records, files)
    # One positions document per worker, each with the files of that worker only.
    docs = {
        m.key(): orjson.loads(m.value()) for m in read_committed(bootstrap, topics["log-capturer-positions"])
    }
    assert set(docs) == {f"{tid}-0".encode(), f"{tid}-1".encode()}
    for i in (0, 1):
        doc = docs[f"{tid}-{i}".encode()]
        assert doc["base"] == tid
        assert sorted(doc["positions"]) == sorted(str(f) for f in files[2 * i : 2 * i + 2])
        assert all(doc["positions"][str(f)]["offset"] == f.stat().st_size for f in files[2 * i : 2 * i + 2])
