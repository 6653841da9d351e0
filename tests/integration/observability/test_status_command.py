"""``log-capturer status`` against a real running agent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from log_capturer.devtools.kafka_local import free_port
from tests.integration.observability.conftest import LineWriter
from tests.support import REPO, AgentProcess, agent_config, create_prefixed_topics, write_config

pytestmark = pytest.mark.integration


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "log_capturer", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


def test_status_shows_a_running_agent(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(tmp_path, bootstrap, topics)
    path = write_config(tmp_path / "config.yaml", cfg)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        with LineWriter(tmp_path / "logs" / "app.log"):
            res = status("--api", agent.api, "--json", "--interval", "2")
            assert res.returncode == 0, res.stdout + res.stderr
            v = json.loads(res.stdout)
            assert v["status"] == "healthy"
            assert v["lines_in_per_second"] > 0 and v["lines_out_per_second"] > 0
            assert set(v["topics_per_second"]) <= set(topics.values())
            (sink,) = v["sinks"]
            assert sink["name"] == "kafka_sink" and sink["status"] == "healthy"
            assert 0 <= v["queue_utilization"] <= 1
            assert v["queue_capacity"] == 50000
            assert set(v["checks"]) >= {"queue", "delivery"}
            assert v["dlq"]["entries"] == 0 and v["dlq"]["entries_written"] == 0  # /dlq/stats and /stats

            table = status("--api", agent.api)
            assert table.returncode == 0, table.stdout + table.stderr
            for part in (
                "healthy",
                "kafka_sink",
                "lines in/s",
                "lines out/s",
                "queue",
                "DLQ",
                "entries_written=0",
            ):
                assert part in table.stdout, (part, table.stdout)
        assert agent.stop(signal.SIGTERM) == 0
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()


def test_status_of_an_agent_that_does_not_answer() -> None:
    res = status("--api", f"http://127.0.0.1:{free_port()}", "--interval", "0")
    assert res.returncode == 2
    assert "did not answer" in res.stderr
