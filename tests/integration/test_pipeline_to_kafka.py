"""A processing pipeline applied by the agent (real process) to tailed files, records read from Kafka."""

from __future__ import annotations

import signal
from pathlib import Path

import orjson
import pytest

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


def test_json_app_pipeline_parses_redacts_and_sets_time_and_level(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        files_config={"pipeline": "json-app"},
        processing={"enabled": True, "pipelines_file": str(REPO / "configs" / "pipelines.yaml")},
    )
    app_log = tmp_path / "logs" / "app.log"
    lines = [
        orjson.dumps(
            {
                "ts": f"2026-11-25T08:00:{i % 60:02d}.5Z",
                "level": ["info", "error"][i % 2],
                "msg": f"order {i} paid with card 4111 1111 1111 1111 password=pw{i}",
                "tenant_id": f"t{i % 3}",
                "token": f"secret-{i}",
            }
        ).decode()
        for i in range(300)
    ]
    lines.append("not json at all, Bearer abcdefgh12345678 WARN")
    app_log.write_text("\n".join(lines) + "\n")
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    try:
        records = consume_all(bootstrap, topics.values(), expected=301, timeout=60)
        assert len(records) == 301, agent.log()
        by_msg = {r.json()["message"]: r for r in records}
        rec = by_msg["order 7 paid with card [REDACTED] password=[REDACTED]"]
        doc = rec.json()
        assert doc["level"] == "error" and rec.topic == topics["logs-high-priority"]
        assert doc["timestamp"] == "2026-11-25T08:00:07.500000000Z"
        assert doc["fields"] == {"tenant_id": "t1", "token": "[REDACTED]"}
        assert rec.key == b"t1"
        plain = by_msg["not json at all, Bearer [REDACTED] WARN"].json()
        assert plain["level"] == "warn" and plain["fields"] == {}
        for r in records:
            assert "4111" not in r.value.decode() and "secret-" not in r.value.decode()
        metrics = wait_until(
            lambda: (m := agent.metrics()) and 'pipeline_lines_total{pipeline="json-app"} 301.0' in m and m,
            30,
            "the pipeline metrics",
        )
        assert 'pipeline_step_failures_total{pipeline="json-app",step="0:json_parse"} 1.0' in metrics
        assert 'pipeline_redactions_total{pipeline="json-app",rule="credit_card"} 300.0' in metrics
        assert 'logs_processed_total{pipeline="json-app",source_id=' in metrics
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_an_unknown_pipeline_name_stops_the_agent_at_start(tmp_path: Path, bootstrap: str) -> None:
    cfg = agent_config(
        tmp_path,
        bootstrap,
        {
            t: t
            for t in ("logs", "logs-high-priority", "logs-normal-priority", "logs-low-priority", "logs-dlq")
        },
        syslog={"enabled": True, "pipeline": "nginx"},
        processing={"enabled": True, "pipelines_file": str(REPO / "configs" / "pipelines.yaml")},
    )
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start(
        wait=False
    )
    assert agent.proc is not None and agent.proc.wait(60) == 2
    assert "syslog.pipeline: no pipeline named 'nginx'" in agent.log()
