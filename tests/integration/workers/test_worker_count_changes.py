"""From one process to two workers and back, across restarts: nothing lost, nothing sent twice."""

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
    missing_and_duplicated,
    write_lines,
)
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

PER_PHASE = 15_000


def _saved(positions: Path) -> dict[str, dict[str, object]]:
    return {p.name: orjson.loads(p.read_bytes())["positions"] for p in positions.glob("files*.json")}


def test_one_then_two_then_one_worker_resume_every_file_where_it_was(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    files = files_for_workers(tmp_path / "logs", 2, 3)
    positions = tmp_path / "positions"
    records: list[Rec] = []
    total = 0
    for phase, workers in enumerate((1, 2, 1)):
        cfg = agent_config(tmp_path, bootstrap, topics, app={"workers": workers})
        path = write_config(tmp_path / f"config-{phase}.yaml", cfg)
        write_lines(files, PER_PHASE, seed=phase + 1)  # more lines in the same files each time
        total += PER_PHASE
        agent = AgentProcess(path, tmp_path / f"agent-{phase}.log").start()
        try:
            records = consume_all(bootstrap, [topics[t] for t in ROUTED], expected=total)
            wait_until(lambda a=agent: a.get("/stats")["files"]["in_flight_lines"] == 0, 60, "acks")
            assert agent.stop(signal.SIGTERM) == 0, agent.log()
        finally:
            if agent.proc is not None and agent.proc.poll() is None:
                agent.kill()
        saved = _saved(positions)
        if workers == 1:
            assert set(saved) == {"files.json"}
            assert set(saved["files.json"]) == {str(f) for f in files}
        else:
            assert set(saved) == {"files.worker-0.json", "files.worker-1.json"}
            for i in (0, 1):
                assert set(saved[f"files.worker-{i}.json"]) == {
                    str(f) for f in files if shard_of(str(f), 2) == i
                }
        # Every file's saved position is its end: all of it acknowledged.
        for entries in saved.values():
            assert all(e["offset"] == Path(p).stat().st_size for p, e in entries.items())
        missing, duplicated = missing_and_duplicated(records, files)
        print(json.dumps({"phase": phase, "workers": workers, "lines": total, "records": len(records)}))
        assert not missing, f"phase {phase}: {len(missing)} lines lost, e.g. {missing[:2]}"
        assert duplicated == 0, f"phase {phase}: {duplicated} lines sent twice"
    assert len(records) == total == 3 * PER_PHASE
    assert_file_order_per_partition(records, files)
