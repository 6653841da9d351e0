"""The DLQ topic inside the transaction (``sinks.kafka.delivery: exactly_once``), against the real
broker: records refused before sending (larger than ``max_message_bytes``) go to the DLQ topic in
the same transaction as the lines around them and the positions past them. Read back
read_committed: every normal line once in the log topic, every over-size line once in the DLQ topic
(in parts, put together in order) with its reason, none in both, also across kill -9."""

from __future__ import annotations

import base64
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from log_capturer.sinks.kafka.transactions import AbortLog
from tests.integration.reliability.conftest import metric
from tests.integration.sinks.kafka.test_exactly_once import (
    caught_up,
    eos_config,
    read_committed,
)
from tests.support import AgentProcess, create_prefixed_topics, wait_until, write_config

pytestmark = pytest.mark.integration

LIMIT = 4096  # sinks.kafka.max_message_bytes
EVERY = 37  # one line in EVERY is over-size


def oversize(seq: int) -> bool:
    return seq % EVERY == 5


def line(seq: int) -> bytes:
    """A JSON line; an over-size one is 1.5 to 3.5 times the limit (two to four DLQ parts)."""
    pad = "x" * (int(LIMIT * (1.5 + (seq % 3))) if oversize(seq) else 40)
    return orjson.dumps({"seq": seq, "pad": pad}) + b"\n"


def write_lines(path: Path, count: int, rate: float) -> threading.Thread:
    """Append ``count`` lines at about ``rate`` lines/s, in batches of 50."""

    def run() -> None:
        with path.open("ab") as f:
            for start in range(0, count, 50):
                f.write(b"".join(line(s) for s in range(start, min(start + 50, count))))
                f.flush()
                time.sleep(50 / rate)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def dead_letters(records: list[Any]) -> list[tuple[dict[str, Any], dict[str, bytes]]]:
    """The DLQ topic's records put together (parts in offset order, ``dlq_part`` i/n): each
    record's value as JSON, and its headers."""
    out: list[tuple[dict[str, Any], dict[str, bytes]]] = []
    pending: dict[int, list[bytes]] = {}
    for m in sorted(records, key=lambda m: (m.partition(), m.offset())):
        headers = {k: v for k, v in (m.headers() or [])}
        part = headers.get("dlq_part")
        if part is None:
            assert m.partition() not in pending, "a whole record in the middle of another's parts"
            out.append((orjson.loads(m.value()), headers))
            continue
        i, n = (int(x) for x in part.decode().split("/"))
        got = pending.setdefault(m.partition(), [])
        assert i == len(got) + 1, f"part {i}/{n} after {len(got)} parts"
        got.append(m.value())
        if i == n:
            out.append((orjson.loads(b"".join(pending.pop(m.partition()))), headers))
    assert not pending, "a record's parts incomplete"
    return out


def check(bootstrap: str, topics: dict[str, str], log: Path, count: int) -> dict[str, int]:
    """Every normal line once in the log topic, in order; every over-size one once in the DLQ
    topic, whole, with its reason; none in both."""
    normal = [s for s in range(count) if not oversize(s)]
    big = [s for s in range(count) if oversize(s)]
    records = read_committed(bootstrap, topics["logs"])
    seqs = [int(orjson.loads(orjson.loads(m.value())["message"])["seq"]) for m in records]
    dup = [s for s, n in Counter(seqs).items() if n > 1]
    assert not dup, f"{len(dup)} lines twice in the log topic, e.g. {sorted(dup)[:5]}"
    assert sorted(seqs) == normal, f"log topic: {sorted(set(normal) - set(seqs))[:5]} missing"
    ordered = [s for m, s in sorted(zip(records, seqs, strict=True), key=lambda p: p[0].offset())]
    assert ordered == normal, "the log topic's lines out of order"
    dlq = dead_letters(read_committed(bootstrap, topics["logs-dlq"]))
    parked = []
    for rec, headers in dlq:
        message = orjson.loads(rec["message"])
        parked.append(int(message["seq"]))
        assert message == orjson.loads(line(int(message["seq"]))), "a DLQ record not whole"
        assert headers["dlq_error_type"] == b"message_too_large", headers
        assert b"exceeds max_message_bytes=4096" in headers["dlq_error_message"], headers
        assert headers["dlq_original_topic"] == topics["logs"].encode(), headers
        assert rec["source_id"] == str(log)
    dup = [s for s, n in Counter(parked).items() if n > 1]
    assert not dup, f"{len(dup)} over-size lines twice in the DLQ topic, e.g. {sorted(dup)[:5]}"
    assert sorted(parked) == big, f"DLQ topic: {sorted(set(big) - set(parked))[:5]} missing"
    assert not set(parked) & set(seqs)
    return {"delivered": len(seqs), "dead_lettered": len(parked)}


def dlq_config(tmp: Path, bootstrap: str, topics: dict[str, str], tid: str, native: bool) -> dict[str, Any]:
    cfg = eos_config(tmp, bootstrap, topics, tid, native)
    cfg["sinks"]["kafka"]["max_message_bytes"] = LIMIT
    return cfg


@pytest.mark.parametrize("native", [True, False], ids=["chunk-producer", "confluent-producer"])
def test_over_size_lines_go_to_the_dlq_topic_in_the_transaction_across_kill_9(
    tmp_path: Path, bootstrap: str, topic_prefix: str, native: bool
) -> None:
    count = 12_000
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    path = write_config(
        tmp_path / "config.yaml", dlq_config(tmp_path, bootstrap, topics, f"{topic_prefix}-dlq", native)
    )
    log = tmp_path / "logs" / "app.log"
    log.touch()
    writer = write_lines(log, count, 2000)
    rnd = random.Random(23)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        for _ in range(2):
            time.sleep(1.0 + rnd.uniform(0, 2))
            agent.kill()
            agent = AgentProcess(path, tmp_path / "agent.log").start()
        writer.join(60)
        assert not writer.is_alive()
        wait_until(lambda: caught_up(agent, [log]), 120, "every line read and acknowledged")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    report = check(bootstrap, topics, log, count)
    assert report["dead_lettered"] == len([s for s in range(count) if oversize(s)])
    # Nothing parked in the local store: the DLQ topic took every refused line.
    assert not any(p.is_file() and p.stat().st_size for p in (tmp_path / "dlq").rglob("*")), list(
        (tmp_path / "dlq").rglob("*")
    )
    print(report)


def test_the_dead_letters_are_counted(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    """Without kills: /metrics counts each refused line once as sent to the DLQ, with its reason."""
    count = 2000
    big = len([s for s in range(count) if oversize(s)])
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    path = write_config(
        tmp_path / "config.yaml", dlq_config(tmp_path, bootstrap, topics, f"{topic_prefix}-n", True)
    )
    log = tmp_path / "logs" / "app.log"
    log.write_bytes(b"".join(line(s) for s in range(count)))
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: caught_up(agent, [log]), 60, "every line read and acknowledged")
        text = agent.metrics()
        stats = agent.get("/stats")["sinks"]["kafka_sink"]
    finally:
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    got = metric(text, "kafka_dlq_messages_total", topic=topics["logs"], reason="message_too_large")
    assert got == big, text
    assert stats["sent_to_dlq_topic"] == big, stats
    assert check(bootstrap, topics, log, count) == {"delivered": count - big, "dead_lettered": big}


BROKER_LIMIT = 200_000  # the log topic's max.message.bytes (the agent's max_message_bytes: 1 MiB)
BIG_EVERY = 500


def broker_line(seq: int) -> bytes:
    """A JSON line; one in BIG_EVERY carries about 400 kB of base64 of random bytes (it does not
    compress below the topic's max.message.bytes)."""
    pad = "x" * 40
    if seq % BIG_EVERY == 250:
        pad = base64.b64encode(random.Random(seq).randbytes(300_000)).decode()
    return orjson.dumps({"seq": seq, "pad": pad}) + b"\n"


@pytest.mark.parametrize("native", [True, False], ids=["chunk-producer", "confluent-producer"])
def test_lines_the_broker_refuses_go_to_the_dlq_topic_after_the_restart(
    tmp_path: Path, bootstrap: str, topic_prefix: str, native: bool
) -> None:
    """The log topic's max.message.bytes is below the agent's max_message_bytes: the broker
    refuses the large lines, each refusal aborts its transaction (exit status 75), and the line is
    remembered in transactions-<id>.json; started again (as a supervisor would), the agent sends
    it to the DLQ topic inside the transaction. Read back read_committed: every other line once in
    the log topic, in order, every refused line once in the DLQ topic with the broker's reason."""
    count = 6000
    big = [s for s in range(count) if s % BIG_EVERY == 250]
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        topics["logs"],
        incremental_configs=[
            ConfigEntry("max.message.bytes", str(BROKER_LIMIT), incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(30)
    tid = f"{topic_prefix}-refused"
    cfg = eos_config(tmp_path, bootstrap, topics, tid, native)
    path = write_config(tmp_path / "config.yaml", cfg)
    log = tmp_path / "logs" / "app.log"
    log.write_bytes(b"".join(broker_line(s) for s in range(count)))
    aborted = 0
    agent = AgentProcess(path, tmp_path / "agent.log").start(wait=False)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert time.monotonic() < deadline, agent.log()
            status = agent.proc.poll() if agent.proc is not None else None
            if status is not None:
                assert status == 75, agent.log()  # an aborted transaction: start again
                aborted += 1
                assert aborted <= 3 * len(big), agent.log()
                agent = AgentProcess(path, tmp_path / "agent.log").start(wait=False)
            elif agent._up() and caught_up(agent, [log]):
                break
            time.sleep(0.2)
        wait_until(
            lambda: agent.get("/stats")["sinks"]["kafka_sink"]["transactions"]["records_open"] == 0,
            30,
            "the last transaction committed",
        )
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    assert aborted >= 1, "the broker refused nothing"
    records = read_committed(bootstrap, topics["logs"])
    seqs = [int(orjson.loads(orjson.loads(m.value())["message"])["seq"]) for m in records]
    normal = [s for s in range(count) if s not in set(big)]
    assert len(seqs) == len(set(seqs)), "lines twice in the log topic"
    assert [s for _, s in sorted(zip([m.offset() for m in records], seqs, strict=True))] == normal
    dlq = dead_letters(read_committed(bootstrap, topics["logs-dlq"]))
    parked = [int(orjson.loads(rec["message"])["seq"]) for rec, _ in dlq]
    assert sorted(parked) == big and len(parked) == len(set(parked)), parked
    for rec, headers in dlq:
        seq = int(orjson.loads(rec["message"])["seq"])
        assert orjson.loads(rec["message"]) == orjson.loads(broker_line(seq))
        assert headers["dlq_error_type"] == b"msg_size_too_large", headers
        assert headers["dlq_original_topic"] == topics["logs"].encode(), headers
    # Done with: nothing is looked for any more.
    assert AbortLog(str(tmp_path / "positions"), tid).refused() == []
    print({"aborted": aborted, "dead_lettered": len(parked), "delivered": len(seqs)})
