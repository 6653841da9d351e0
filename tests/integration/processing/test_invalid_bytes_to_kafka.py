"""JSON lines with bytes that are not valid UTF-8 keep their tenant's key and level, through a real Kafka."""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    write_config,
)

pytestmark = pytest.mark.integration

#: A byte that never starts a sequence, a lone continuation byte, truncated 2- and 3-byte
#: sequences, a UTF-8-encoded surrogate.
INVALID = [b"\xff", b"\x80", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80"]


def tenant_lines(tenant: bytes, count: int) -> list[tuple[bytes, str]]:
    """(raw line, level): every third one with an invalid byte in its message, somewhere."""
    out = []
    for i in range(count):
        level = ("error", "warn")[i % 2]
        msg = b"request %d done" % i
        if i % 3 == 0:
            bad = INVALID[i // 3 % len(INVALID)]
            at = i % len(msg)
            # Past the 120 characters a plain-text guess would look at, now and then.
            msg = b"x" * (130 * (i % 4 == 0)) + msg[:at] + bad + msg[at:]
        doc = b'{"msg":"%s","tenant_id":"%s","seq":%d,"level":"%s"}' % (msg, tenant, i, level.encode())
        out.append((doc, level))
    return out


def test_a_tenants_lines_with_invalid_bytes_stay_on_its_partition_with_its_key_and_level(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = write_config(tmp_path / "config.yaml", agent_config(tmp_path, bootstrap, topics))
    # One tenant, and one whose name has an invalid byte: its key is the name as decoded.
    acme, odd = tenant_lines(b"acme", 300), tenant_lines(b"ac\xffme", 30)
    log = tmp_path / "logs" / "app.log"
    log.write_bytes(b"".join(raw + b"\n" for raw, _ in acme + odd))
    want = {raw.decode("utf-8", "backslashreplace"): level for raw, level in acme + odd}
    high, normal = topics["logs-high-priority"], topics["logs-normal-priority"]
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        records = consume_all(bootstrap, topics.values(), expected=len(want), timeout=120)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
    assert len(records) == len(want)
    partitions: dict[tuple[bytes | None, str], set[int]] = defaultdict(set)
    for rec in records:
        doc = orjson.loads(rec.value.decode("utf-8"))  # valid UTF-8, valid JSON
        line = doc["message"]
        key = "acme" if '"tenant_id":"acme"' in line else "ac\\xffme"
        assert rec.key == key.encode(), line
        assert doc["fields"] == {"tenant_id": key}, line
        assert doc["level"] == want.pop(line), line
        assert rec.topic == {"error": high, "warn": normal}[doc["level"]]
        partitions[rec.key, rec.topic].add(rec.partition)
    assert not want, f"missing: {list(want)[:3]}"
    assert sorted(partitions) == [(k, t) for k in (b"ac\\xffme", b"acme") for t in sorted((high, normal))]
    assert all(len(p) == 1 for p in partitions.values()), partitions
