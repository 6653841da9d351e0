"""Binary junk, invalid UTF-8 and a 5 MB line with no newline (issue 4, test 5).

The documented policy (README, "Bad input"): bytes that are not UTF-8 are kept as ``\\xNN``
escapes; a line longer than ``files_config.max_line_bytes`` is cut there, marked
``truncated: true`` and counted, and the rest of it up to the next newline is skipped; a record
larger than ``sinks.kafka.max_message_bytes`` (escapes make lines longer) goes to the DLQ with the
reason ``message_too_large``. The agent keeps running and nothing is lost silently.
"""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest

from tests.integration.reliability.conftest import metric
from tests.integration.reliability.test_dlq_replay import shipped_topics
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


def test_malformed_input_is_shipped_truncated_or_parked_and_the_agent_keeps_running(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        files_config={"max_line_bytes": 512 * 1024},
        sinks={"kafka": {"partitioning": {"enabled": True, "strategy": "hash", "key_field": "tenant_id"}}},
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    rnd = random.Random(5)
    junk = [bytes(rnd.randrange(256) for _ in range(200)).replace(b"\n", b"") for _ in range(20)]
    invalid_utf8 = [b"caf\xc3 \xff\xfe bad \xe2\x82 utf-8 " + str(i).encode() for i in range(20)]
    # Within max_line_bytes as read, but its 300,000 invalid bytes become 1.2 MB of escapes:
    # larger than max_message_bytes (1 MiB), so the record goes to the DLQ.
    escaped_too_large = b"\xff" * 300_000
    # Over-long lines ended in the same read buffer: cut at max_line_bytes (the last kept
    # character whole), marked, their level read from what is kept.
    cut_json = (
        b'{"level":"error","tenant_id":"t-long","msg":"' + b"y" * (512 * 1024 - 46) + "é".encode() * 50_000
    )
    cut_plain = b"WARN " + b"z" * (600 * 1024) + b"\r"
    log = tmp_path / "logs" / "app.log"
    log.write_bytes(
        b"INFO before\n"
        + b"".join(j + b"\n" for j in junk)
        + b"".join(u + b"\n" for u in invalid_utf8)
        + cut_json
        + b"\n"
        + cut_plain
        + b"\n"
        + escaped_too_large
        + b"\n"
        + b"x" * (5 << 20)  # 5 MB and no newline yet
    )
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(
            lambda: metric(agent.metrics(), "logs_truncated_total", source_type="file") == 3.0,
            60,
            "the 5 MB line to be cut",
        )
        with log.open("ab") as f:
            f.write(b" end of the long line\nINFO after the long line\n")
        records = consume_all(bootstrap, shipped_topics(topics), expected=45, timeout=60)
        wait_until(lambda: agent.get("/dlq/stats")["entries"] == 1, 30, "the oversize record in the DLQ")
        health = agent.get("/health")
        metrics = agent.metrics()
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    docs = [r.json() for r in records]  # every record parses as JSON
    messages = [d["message"] for d in docs]
    assert "INFO before" in messages and "INFO after the long line" in messages
    for u in invalid_utf8:
        assert u.decode("utf-8", "backslashreplace") in messages
    for j in junk:
        text = j.decode("utf-8", "backslashreplace").removesuffix("\r")
        assert text in messages or not text, j
    cut_records = {r.json()["message"][:4]: r for r in records if r.json().get("truncated")}
    assert sorted(cut_records) == sorted(['{"le', "WARN", "xxxx"])
    long_json, long_plain, cut = (cut_records[k].json() for k in ('{"le', "WARN", "xxxx"))
    assert cut["message"] == "x" * (512 * 1024)
    kept = cut_json[: 512 * 1024 - 1].decode()  # the byte at the limit starts a character: left out
    assert long_json["message"] == kept and long_json["level"] == "error"
    # Cut, the line is no longer a JSON object: its level is read as text's, and its key from its
    # "tenant_id" member where it stands (the record keeps its tenant's partition).
    assert long_json["fields"] == {"tenant_id": "t-long"} and cut_records['{"le'].key == b"t-long"
    assert long_plain["message"] == "WARN " + "z" * (512 * 1024 - 5) and long_plain["level"] == "warn"
    assert metric(metrics, "logs_truncated_total", source_type="file") == 3.0
    [parked] = [
        json.loads(x) for f in (tmp_path / "dlq").glob("dlq_entry_*.json") for x in f.read_text().splitlines()
    ]
    assert parked["error_type"] == "message_too_large"
    assert parked["original_entry"]["message"] == "\\xff" * 300_000
    assert metric(metrics, "kafka_dlq_messages_total", reason="message_too_large") == 1.0
    assert health["status"] == "healthy", health
    assert len(records) == 45, json.dumps(sorted(m[:40] for m in messages))
