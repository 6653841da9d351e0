"""Files -> agent (real process) -> real Kafka broker -> independent consumer."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

LEVEL_TOPIC = {
    "error": "logs-high-priority",
    "fatal": "logs-high-priority",
    "critical": "logs-high-priority",
    "warn": "logs-normal-priority",
    "info": "logs-normal-priority",
    "debug": "logs-low-priority",
    "trace": "logs-low-priority",
    "": "logs",
}


def make_line(tag: str, i: int) -> tuple[str, str, str | None]:
    """One line in one of several formats: (line, expected level, expected key or None)."""
    kind = i % 8
    tenant = f"tenant-{i % 5}"
    seq = f"{tag}-{i}"
    if kind == 0:
        return (
            orjson.dumps({"level": "ERROR", "tenant_id": tenant, "msg": "failed", "seq": seq}).decode(),
            "error",
            tenant,
        )
    if kind == 1:
        return f'ts=2026-01-01T00:00:00Z level=warn tenant_id={tenant} msg="slow" seq={seq}', "warn", tenant
    if kind == 2:
        return f"2026-01-01 00:00:00,123 [main] INFO com.example.App - started seq={seq}", "info", None
    if kind == 3:
        return f"[DEBUG] cache miss seq={seq}", "debug", None
    if kind == 4:
        return f"just a plain line without a level seq={seq}", "", None
    if kind == 5:
        return orjson.dumps({"severity": "trace", "seq": seq}).decode(), "trace", None
    if kind == 6:
        return f"W1125 10:00:00.000000 42 server.go:10] queue filling seq={seq}", "warn", None
    return f"FATAL out of memory seq={seq}", "fatal", None


def write_lines(path: Path, tag: str, start: int, count: int) -> dict[str, tuple[str, str | None]]:
    expected: dict[str, tuple[str, str | None]] = {}
    with path.open("a") as f:
        for i in range(start, start + count):
            line, level, key = make_line(tag, i)
            f.write(line + "\n")
            expected[line] = (level, key)
    return expected


def check_records(
    records: list, expected: dict[str, dict[str, tuple[str, str | None]]], topics: dict[str, str]
) -> None:
    """Every expected line exactly once, on the right topic, with the right key."""
    by_topic = {v: k for k, v in topics.items()}
    seen: Counter[str] = Counter()
    problems: list[str] = []
    for rec in records:
        doc = rec.json()
        for field in ("timestamp", "message", "level", "source_type", "source_id", "labels", "fields"):
            assert field in doc, f"record lacks {field}: {doc}"
        assert doc["source_type"] == "file"
        line = doc["message"]
        seen[line] += 1
        source = doc["source_id"]
        if source not in expected or line not in expected[source]:
            problems.append(f"unexpected record {doc}")
            continue
        level, key = expected[source][line]
        if doc["level"] != level:
            problems.append(f"level {doc['level']!r} != {level!r} for {line}")
        if by_topic[rec.topic] != LEVEL_TOPIC[level]:
            problems.append(f"{line} went to {rec.topic}, expected {LEVEL_TOPIC[level]}")
        want_key = (key or source).encode()
        if rec.key != want_key:
            problems.append(f"key {rec.key!r} != {want_key!r} for {line}")
    total = sum(len(v) for v in expected.values())
    dups = {line: n for line, n in seen.items() if n > 1}
    missing = [line for lines in expected.values() for line in lines if line not in seen]
    assert not problems, f"{len(problems)} wrong records, e.g. {problems[:5]}"
    assert not dups, f"{len(dups)} duplicated lines, e.g. {list(dups.items())[:5]}"
    assert not missing, f"{len(missing)} of {total} lines missing, e.g. {missing[:5]}"
    assert len(records) == total


@pytest.mark.parametrize("native", [True, False], ids=["chunk-producer", "confluent-kafka"])
def test_lines_arrive_exactly_once_on_the_right_topic_with_the_right_key(
    native: bool, tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """Both producer paths (``sinks.kafka.native_producer``): the chunk producer, and
    confluent-kafka's producer for every record."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    section = {"native_producer": native}
    cfg = write_config(
        tmp_path / "config.yaml", agent_config(tmp_path, bootstrap, topics, sinks={"kafka": section})
    )
    a, b = tmp_path / "logs" / "app.log", tmp_path / "logs" / "sub" / "worker.log"
    b.parent.mkdir()
    expected = {str(a): write_lines(a, "a", 0, 7000), str(b): write_lines(b, "b", 0, 5000)}
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        for step in range(4):  # appended while the agent runs
            expected[str(a)].update(write_lines(a, "a", 7000 + step * 1000, 1000))
            expected[str(b)].update(write_lines(b, "b", 5000 + step * 1000, 1000))
            time.sleep(0.2)
        records = consume_all(bootstrap, topics.values(), expected=20000, timeout=120)
        check_records(records, expected, topics)
        assert agent.get("/stats")["sinks"]["kafka_sink"]["chunk_producer"] is native
        health = agent.get("/health")
        sinks = health["services"]["sinks"]
        assert [s["name"] for s in sinks] == ["kafka_sink"]
        assert sinks[0]["status"] == "healthy", health
        assert {"name", "status", "message", "last_check"} <= set(sinks[0])
        metrics = agent.metrics()
        assert 'logs_processed_total{pipeline="default",source_id="' + str(a) in metrics
        # Its threads by their names for the system (top -H, ps -L; log_capturer.threadnames).
        assert agent.proc is not None
        names = {(t / "comm").read_text().strip() for t in Path(f"/proc/{agent.proc.pid}/task").iterdir()}
        assert {"log-capturer", "dispatch-0", "file-source", "kafka_sink-poll", "http"} <= names, names
        rc = agent.stop(signal.SIGTERM)
        assert rc == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
    positions = orjson.loads((tmp_path / "positions" / "files.json").read_bytes())["positions"]
    assert positions[str(a)]["offset"] == a.stat().st_size
    assert positions[str(b)]["offset"] == b.stat().st_size
    assert positions[str(a)]["log_count"] == 11000


def test_graceful_stop_midstream_then_restart_loses_and_duplicates_nothing(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = write_config(
        tmp_path / "config.yaml",
        agent_config(
            tmp_path,
            bootstrap,
            topics,
            dispatcher={"queue_size": 5000, "batch_size": 500},
            files_config={"read_buffer_bytes": 65536},
        ),
    )
    log = tmp_path / "logs" / "big.log"
    # Enough lines that the stop, sent as soon as the first are delivered, comes before the end
    # (150,000 were once all shipped before it: the agent ships several hundred thousand a second).
    lines = 600_000
    expected = {str(log): write_lines(log, "big", 0, lines)}
    agent = AgentProcess(cfg, tmp_path / "agent-1.log").start()
    try:
        wait_until(
            lambda: agent.get("/stats")["sinks"]["kafka_sink"]["delivered"] > 0,
            60,
            "the first deliveries",
            interval=0.01,
        )
        rc = agent.stop(signal.SIGINT)  # Ctrl-C
        assert rc == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
    saved = orjson.loads((tmp_path / "positions" / "files.json").read_bytes())["positions"][str(log)]
    first_run = consume_all(bootstrap, topics.values())
    print(
        f"first run shipped {len(first_run)} of {lines} lines; checkpoint at byte "
        f"{saved['offset']} of {log.stat().st_size}"
    )
    assert 0 < len(first_run) < lines, "the stop must come in the middle of the stream"
    assert saved["log_count"] == len(first_run), "the checkpoint must cover exactly what was acknowledged"
    expected[str(log)].update(write_lines(log, "big", lines, 10_000))  # written while stopped
    agent2 = AgentProcess(cfg, tmp_path / "agent-2.log").start()
    try:
        records = consume_all(bootstrap, topics.values(), expected=lines + 10_000, timeout=180)
        check_records(records, expected, topics)
        assert agent2.stop(signal.SIGTERM) == 0, agent2.log()
    finally:
        if agent2.proc and agent2.proc.poll() is None:
            agent2.kill()
