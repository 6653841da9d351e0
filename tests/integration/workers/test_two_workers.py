"""Two worker processes over several files, against the real broker: every line once, in order."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import orjson
import pytest

from log_capturer.workers.shard import shard_of
from tests.integration.workers.conftest import (
    ROUTED,
    assert_file_order_per_partition,
    files_for_workers,
    generate,
    missing_and_duplicated,
    write_lines,
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

BEFORE = 20_000  # lines written before the agent starts
WHILE = 20_000  # lines written while it runs


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def thread_names(pid: int) -> set[str]:
    return {(t / "comm").read_text().strip() for t in Path(f"/proc/{pid}/task").iterdir()}


def test_two_workers_ship_every_line_once_in_file_order_each_file_in_one_worker(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(tmp_path, bootstrap, topics, app={"workers": 2})
    path = write_config(tmp_path / "config.yaml", cfg)
    files = files_for_workers(tmp_path / "logs", 2, 3)
    write_lines(files, BEFORE, seed=1)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        writer = generate(files, WHILE, rate=5000, seed=2)
        assert writer.wait(120) == 0
        records = consume_all(bootstrap, [topics[t] for t in ROUTED], expected=BEFORE + WHILE)
        wait_until(lambda: agent.get("/stats")["files"]["in_flight_lines"] == 0, 60, "acknowledgements")
        # Which worker follows which file, as the agent reports it.
        by_worker = agent.get("/positions")["workers"]
        stats = agent.get("/stats")
        # The processes by their names for the system: the supervisor, then each worker's
        # main thread and its own threads (log_capturer.threadnames).
        assert agent.proc is not None
        assert comm(agent.proc.pid) == "lc-supervisor"
        workers = [
            int(c) for c in Path(f"/proc/{agent.proc.pid}/task/{agent.proc.pid}/children").read_text().split()
        ]
        assert len(workers) == 2 and {comm(w) for w in workers} == {"log-capturer"}
        assert all({"dispatch-0", "file-source", "lifeline"} <= thread_names(w) for w in workers)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    missing, duplicated = missing_and_duplicated(records, files)
    print(json.dumps({"lines": BEFORE + WHILE, "records": len(records), "missing": len(missing)}))
    assert not missing, f"{len(missing)} lines lost, e.g. {missing[:2]}"
    assert duplicated == 0 and len(records) == BEFORE + WHILE
    assert_file_order_per_partition(records, files)
    # Each file was followed by exactly one worker: the one its path hashes to, and no other.
    for index in ("0", "1"):
        assert sorted(by_worker[index]["files"]) == sorted(
            str(f) for f in files if shard_of(str(f), 2) == int(index)
        )
    per_worker = [w["stats"]["files"]["lines_read"] for w in stats["workers"]]
    on_disk = [
        sum(len(f.read_text().splitlines()) for f in files if shard_of(str(f), 2) == i) for i in (0, 1)
    ]
    assert per_worker == on_disk and stats["files"]["lines_read"] == BEFORE + WHILE
    # Each worker saved only its own files' positions, each at the end of its file.
    for index in (0, 1):
        saved = orjson.loads((tmp_path / "positions" / f"files.worker-{index}.json").read_bytes())
        mine = {str(f) for f in files if shard_of(str(f), 2) == index}
        assert set(saved["positions"]) == mine
        assert all(e["offset"] == Path(p).stat().st_size for p, e in saved["positions"].items())
    assert not (tmp_path / "positions" / "files.json").exists()
