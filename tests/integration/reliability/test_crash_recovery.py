"""The agent is killed with SIGKILL at three random moments while 100,000 lines ship (issue 4, test 2)."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest

from tests.integration.reliability.conftest import generate, seqs
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

LINES = 100_000
RATE = 4000
KILLS = 3
#: Tuned small so that the window of lines read but not checkpointed is small and known.
DISPATCHER_QUEUE = 2000
PRODUCER_QUEUE = 2000
FLUSH_INTERVAL = 0.1


def test_sigkill_three_times_loses_nothing_and_duplicates_only_the_unacknowledged_window(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        dispatcher={"queue_size": DISPATCHER_QUEUE, "batch_size": 500},
        sinks={"kafka": {"queue_size": PRODUCER_QUEUE}},
        positions={"flush_interval": f"{int(FLUSH_INTERVAL * 1000)}ms"},
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    writer = generate(tmp_path / "logs" / "app.log", RATE, count=LINES, duration=0)
    rnd = random.Random(20261202)
    kills: list[dict[str, float]] = []
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        for _ in range(KILLS):
            # A random moment while lines flow, at least 2 s after the previous start.
            time.sleep(2 + rnd.uniform(0, 5))
            stats = agent.get("/stats")
            agent.kill()
            kills.append({"read": stats["files"]["lines_read"], "at": time.time()})
            agent = AgentProcess(path, tmp_path / "agent.log").start()
        assert writer.wait(120) == 0
        # Duplicates count towards the records there: read again until every line is there (or
        # the time is up: then the missing ones are reported below).
        deadline = time.monotonic() + 120
        shipped = [t for n, t in topics.items() if n != "logs-dlq"]
        while True:
            records = consume_all(bootstrap, shipped, expected=LINES)
            if len(seqs(records)) >= LINES or time.monotonic() > deadline:
                break
            time.sleep(1)
        wait_until(
            lambda: agent.get("/stats")["files"]["in_flight_lines"] == 0, 60, "the last acknowledgements"
        )
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        writer.kill()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    counts = seqs(records)
    missing = sorted(set(range(LINES)) - set(counts))
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    # What one kill can re-send: lines delivered but not yet in the saved positions, i.e. at most
    # the producer's queue, the dispatcher's queue, one read buffer of lines, and what was
    # acknowledged since the last positions flush.
    read_buffer_lines = (1 << 20) // 150
    window = PRODUCER_QUEUE + DISPATCHER_QUEUE + read_buffer_lines + int(RATE * FLUSH_INTERVAL * 4)
    print(
        json.dumps(
            {
                "lines": LINES,
                "kills": len(kills),
                "missing": len(missing),
                "duplicates": duplicates,
                "duplicates_bound": KILLS * window,
                "records_read": len(records),
            }
        )
    )
    assert not missing, f"{len(missing)} lines lost, e.g. seq {missing[:5]}"
    assert duplicates <= KILLS * window, f"{duplicates} duplicates > {KILLS} x {window}"
