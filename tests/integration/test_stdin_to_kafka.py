"""`log-capturer run --stdin` as a real process: every line of a pipe reaches Kafka, then it exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, agent_config, consume_all, create_prefixed_topics, write_config

pytestmark = pytest.mark.integration


def test_stdin_ships_every_line_and_exits_zero(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = write_config(
        tmp_path / "config.yaml",
        agent_config(
            tmp_path,
            bootstrap,
            topics,
            stdin={"source_id": "import-job", "labels": {"tenant_id": "acme"}},
            dispatcher={"queue_size": 2000},
        ),
    )
    (tmp_path / "logs" / "ignored.log").write_text("a file line that --stdin must not ship\n")
    lines = [f"{['INFO', 'ERROR', 'DEBUG', 'note'][i % 4]} stdin line {i}" for i in range(30_000)]
    data = ("\n".join(lines) + "\n\n\r\nlast line without newline").encode()
    done = subprocess.run(
        [sys.executable, "-m", "log_capturer", "run", "--stdin", "-c", str(cfg), "--no-status"],
        input=data,
        capture_output=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )
    log = done.stderr.decode(errors="replace")
    assert done.returncode == 0, log[-5000:]
    assert "all 30001 lines of standard input were acknowledged" in log
    records = consume_all(bootstrap, topics.values(), expected=30_001, timeout=60)
    docs = [r.json() for r in records]
    assert sorted(d["message"] for d in docs) == sorted([*lines, "last line without newline"])
    assert {(d["source_type"], d["source_id"]) for d in docs} == {("stdin", "import-job")}
    assert {r.key for r in records} == {b"acme"}
    levels = {d["message"]: d["level"] for d in docs}
    assert (levels["ERROR stdin line 1"], levels["note stdin line 3"]) == ("error", "")
    # One source keeps its order: the records of each topic follow the input.
    sent = [*lines, "last line without newline"]
    for topic in topics.values():
        in_topic = [r.json()["message"] for r in sorted(records, key=lambda r: r.offset) if r.topic == topic]
        wanted = set(in_topic)
        assert in_topic == [m for m in sent if m in wanted]


def test_stdin_exits_non_zero_when_lines_cannot_be_delivered(tmp_path: Path) -> None:
    from log_capturer.devtools.kafka_local import free_port

    topics = {
        t: t for t in ("logs", "logs-high-priority", "logs-normal-priority", "logs-low-priority", "logs-dlq")
    }
    cfg = write_config(
        tmp_path / "config.yaml",
        agent_config(tmp_path, f"127.0.0.1:{free_port()}", topics, dispatcher={"drain_timeout": "1s"}),
    )
    done = subprocess.run(
        [sys.executable, "-m", "log_capturer", "run", "--stdin", "-c", str(cfg), "--no-status"],
        input=b"one\ntwo\n",
        capture_output=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    log = done.stderr.decode(errors="replace")
    assert done.returncode == 1, log[-3000:]
    assert "2 lines of standard input were not acknowledged" in log
