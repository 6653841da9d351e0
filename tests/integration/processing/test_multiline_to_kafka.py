"""Java stack traces (a file) and Python tracebacks (a Kubernetes pod) joined, through a real Kafka."""

from __future__ import annotations

import signal
from pathlib import Path

import orjson
import pytest

from tests.container_trees import PodContainer
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


def java_trace(i: int) -> list[str]:
    return [
        f"2026-01-01 12:00:{i % 60:02d},000 ERROR [http-{i}] c.e.Api - request {i} failed",
        f"java.lang.IllegalStateException: state {i}",
        "\tat com.example.Service.handle(Service.java:42)",
        "\tat com.example.Api.serve(Api.java:17)",
        "Caused by: java.io.IOException: disk full",
        "\tat com.example.Store.write(Store.java:7)",
        "\t... 2 more",
    ]


def python_trace(i: int) -> list[str]:
    return [
        f"2026-01-01 12:00:00 ERROR worker: job {i} failed",
        "Traceback (most recent call last):",
        '  File "/srv/worker.py", line 10, in run',
        "    step()",
        f"ValueError: bad input {i}",
    ]


def test_java_and_python_traces_arrive_as_one_record_each(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    pods = tmp_path / "pods"
    pods.mkdir()
    cfg = write_config(
        tmp_path / "config.yaml",
        agent_config(
            tmp_path,
            bootstrap,
            topics,
            files_config={"multiline": {"preset": "java", "timeout": "300ms", "path_patterns": ["java-*"]}},
            kubernetes={
                "enabled": True,
                "pods_directory": str(pods),
                "rescan_interval": "500ms",
                "multiline": {"preset": "python", "timeout": "300ms"},
            },
        ),
    )
    java = tmp_path / "logs" / "java-app.log"
    plain = tmp_path / "logs" / "plain.log"
    pod = PodContainer(pods, "jobs", "worker-1", "u1", "worker").create()
    expected_java: list[str] = []
    expected_py: list[str] = []
    with java.open("w") as f:
        for i in range(200):
            f.write(f"2026-01-01 12:00:00,000 INFO [main] c.e.Api - ok {i}\n")
            expected_java.append(f"2026-01-01 12:00:00,000 INFO [main] c.e.Api - ok {i}")
            if i % 4 == 0:
                f.write("\n".join(java_trace(i)) + "\n")
                expected_java.append("\n".join(java_trace(i)))
    plain.write_text("\tindented but no multiline rule here\nsecond\n")
    for i in range(50):
        pod.write([f"2026-01-01 12:00:00 INFO worker: job {i} started"])
        # A runtime splits long lines: CRI partial lines inside a traceback.
        pod.write(python_trace(i), "stderr", split_at=16)
        expected_py += [f"2026-01-01 12:00:00 INFO worker: job {i} started", "\n".join(python_trace(i))]
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        total = len(expected_java) + len(expected_py) + 2
        records = consume_all(bootstrap, topics.values(), expected=total, timeout=120)
        by_source: dict[str, list[str]] = {}
        levels: dict[str, str] = {}
        for rec in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
            doc = rec.json()
            by_source.setdefault(doc["source_id"], []).append(doc["message"])
            levels[doc["message"]] = doc["level"]
        assert sorted(by_source[str(java)]) == sorted(expected_java)
        assert sorted(by_source[pod.source_id]) == sorted(expected_py)
        assert sorted(by_source[str(plain)]) == ["\tindented but no multiline rule here", "second"]
        assert levels["\n".join(java_trace(0))] == "error"
        assert levels["\n".join(python_trace(3))] == "error"
        assert len(records) == total
        print(
            f"multiline: {len(expected_java)} Java records, {len(expected_py)} Python records, exactly once"
        )
        # The checkpoint of the last joined record is written once it was acknowledged.
        size = java.stat().st_size
        wait_until(
            lambda: agent.get("/positions")["files"][str(java)]["offset"] == size, 30, "the final checkpoint"
        )
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
        saved = orjson.loads((tmp_path / "positions" / "files.json").read_bytes())["positions"]
        assert saved[str(java)]["log_count"] == len(expected_java)
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
