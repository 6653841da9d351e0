"""A line larger than max_message_bytes lands in the DLQ and is replayed (issue 4, test 3)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.reliability.conftest import metric
from tests.support import (
    REPO,
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

BIG = "ERROR " + "payload " * 750  # 6,006 characters: larger than 4,096 bytes as a record


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "log_capturer", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def post(url: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def shipped_topics(topics: dict[str, str]) -> list[str]:
    return [t for name, t in topics.items() if name != "logs-dlq"]


def test_oversize_line_is_parked_counted_and_replayed_by_the_cli_once_the_limit_is_raised(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines = [f"INFO before {i}" for i in range(100)] + [BIG] + [f"INFO after {i}" for i in range(100)]
    reprocessing = {"enabled": False}
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        sinks={"kafka": {"max_message_bytes": 4096}},
        dispatcher={"dlq_config": {"reprocessing_config": reprocessing}},
    )
    small = write_config(tmp_path / "config.yaml", cfg)
    cfg["sinks"]["kafka"]["max_message_bytes"] = 16384
    raised = write_config(tmp_path / "raised.yaml", cfg)
    (tmp_path / "logs" / "app.log").write_text("".join(f"{line}\n" for line in lines))
    agent = AgentProcess(small, tmp_path / "agent.log").start()
    try:
        first = consume_all(bootstrap, shipped_topics(topics), expected=200)
        wait_until(lambda: agent.get("/dlq/stats")["entries"] == 1, 30, "the parked line")
        stats = agent.get("/dlq/stats")
        metrics = agent.metrics()
        listed = cli("dlq", "list", "-c", str(small), "--json")
        # Still too large with the old limit: the entry stays, with the attempt and the reason.
        refused = cli("dlq", "replay", "-c", str(small), "--no-progress")
        after_refusal = [
            json.loads(x) for x in cli("dlq", "list", "-c", str(small), "--json").stdout.splitlines()
        ]
        # Beside the running agent, with the raised limit: delivered, and gone from the store.
        replayed = cli("dlq", "replay", "-c", str(raised), "--no-progress")
        final = consume_all(bootstrap, shipped_topics(topics), expected=201)
        remaining = agent.get("/dlq/stats")["entries"]
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    assert sorted(r.json()["message"] for r in first) == sorted(x for x in lines if x != BIG)
    assert stats["by_reason"] == {"message_too_large": 1}, stats
    assert metric(metrics, "kafka_dlq_messages_total", reason="message_too_large") == 1.0
    assert metric(metrics, "logs_sent_total", sink_type="kafka", status="dlq") == 1.0
    [entry] = [json.loads(x) for x in listed.stdout.splitlines()]
    assert entry["original_entry"]["message"] == BIG
    assert entry["error_type"] == "message_too_large"
    assert "exceeds max_message_bytes=4096" in entry["error_message"]
    assert entry["topic"] == topics["logs-high-priority"]
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "still exceeds max_message_bytes=4096" in refused.stdout
    assert after_refusal[0]["reprocess_attempts"] == 1
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "1 delivered" in replayed.stdout
    [big] = [r for r in final if r.json()["message"] == BIG]
    assert big.topic == topics["logs-high-priority"]
    assert remaining == 0


def test_reprocessing_retries_with_backoff_then_post_dlq_reprocess_replays_what_is_left(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    reprocessing = {
        "interval": "500ms",
        "initial_delay": "200ms",
        "delay_multiplier": 2,
        "min_entry_age": "0s",
        "max_retries": 2,
    }
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        sinks={"kafka": {"max_message_bytes": 4096}},
        dispatcher={"dlq_config": {"reprocessing_config": reprocessing}},
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    (tmp_path / "logs" / "app.log").write_text(f"INFO one\n{BIG}\nINFO two\n")
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        consume_all(bootstrap, shipped_topics(topics), expected=2)
        # The reprocessor tries twice on its own (still too large), then leaves it parked.
        wait_until(lambda: agent.get("/dlq/stats")["exhausted"] == 1, 60, "two automatic attempts")
        exhausted = agent.get("/dlq/stats")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
        cfg["sinks"]["kafka"]["max_message_bytes"] = 16384
        write_config(path, cfg)
        agent = AgentProcess(path, tmp_path / "agent2.log").start()
        due_only = post(agent.api + "/dlq/reprocess")
        everything = post(agent.api + "/dlq/reprocess?all=true")
        records = consume_all(bootstrap, shipped_topics(topics), expected=3)
        after = agent.get("/dlq/stats")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    assert exhausted["entries"] == 1 and exhausted["due_for_reprocessing"] == 0, exhausted
    assert exhausted["reprocessing"]["failed_total"] == 2, exhausted["reprocessing"]
    assert due_only[0] == 200 and due_only[1]["attempted"] == 0, due_only
    assert everything[0] == 200 and everything[1]["delivered"] == 1, everything
    assert after["entries"] == 0
    assert BIG in [r.json()["message"] for r in records]
