"""1,000 files followed by an agent whose descriptor limit is 1,024; real Kafka."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    write_config,
)

pytestmark = pytest.mark.integration

FILES = 1000
MAX_OPEN = 256


@pytest.mark.parametrize("watcher", ["auto", "poll"])
def test_a_thousand_files_with_bounded_descriptors(
    tmp_path: Path, bootstrap: str, topic_prefix: str, watcher: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = write_config(
        tmp_path / "config.yaml",
        agent_config(
            tmp_path,
            bootstrap,
            topics,
            files_config={"max_open_files": MAX_OPEN, "rescan_interval": "1s", "watcher": watcher},
        ),
    )
    paths = [tmp_path / "logs" / f"svc{i // 100:02d}" / f"app{i:04d}.log" for i in range(FILES)]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
    expected: Counter[str] = Counter()

    def append(round_: int, count: int) -> None:
        for i, p in enumerate(paths):
            lines = [f"file {i:04d} round {round_} line {n}" for n in range(count)]
            with p.open("a") as f:
                f.write("".join(line + "\n" for line in lines))
            expected.update(lines)

    append(0, 20)
    agent = AgentProcess(cfg, tmp_path / "agent.log", fd_limit=1024).start()
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            try:
                samples.append(agent.open_fds())
            except OSError:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for round_ in (1, 2, 3):
            append(round_, 10)
            time.sleep(0.5)
        total = sum(expected.values())
        records = consume_all(bootstrap, topics.values(), expected=total, timeout=180)
        got = Counter(r.json()["message"] for r in records)
        dups = sum(n - 1 for n in got.values() if n > 1)
        missing = sum(1 for line in expected if line not in got)
        metrics = agent.metrics()
        stats = agent.get("/stats")["files"]
        done.set()
        sampler.join(5)
        print(
            f"{FILES} files, {total} lines: duplicates={dups} missing={missing}; descriptors: "
            f"max={max(samples)} over {len(samples)} samples (limit 1024, max_open_files={MAX_OPEN}); "
            f"open log files now={stats['open_files']}"
        )
        assert (dups, missing) == (0, 0)
        assert len(records) == total
        assert "files_monitored 1000.0" in metrics
        assert stats["monitored"] == FILES
        # With inotify (this kernel has it) no file is polled: events say which ones to read.
        assert (stats["watcher"], stats["polled_files"]) == (
            ("inotify", 0) if watcher == "auto" else ("poll", FILES)
        )
        assert max(samples) < MAX_OPEN + 100, "descriptors must stay bounded by max_open_files"
        assert "Too many open files" not in agent.log(tail=100000)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        done.set()
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
