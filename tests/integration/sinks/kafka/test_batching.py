"""Batching as the broker stored it: adaptive batching, batch_size and batch_timeout, read back with
the broker's own log-dump tool (``DumpLogSegments``). No timings are asserted: the tests count the
records of each stored batch."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from log_capturer.devtools.kafka_local import LocalKafka, StoredBatch
from tests.integration.sinks.kafka.util import metric, ship_lines
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

#: Lines without a level go to the "logs" topic; all of one file share its key (the source id),
#: so they land on one partition and the batches below are that partition's.
PACED_LINES = 12
PACE = 0.25


def paced(
    tmp: Path, kafka: LocalKafka, bootstrap: str, prefix: str, kafka_section: dict[str, object]
) -> list[StoredBatch]:
    """Append one line every PACE seconds (a trickle), wait for all of them, return the stored batches."""
    topics = create_prefixed_topics(bootstrap, prefix)
    cfg = agent_config(tmp, bootstrap, topics, sinks={"kafka": {"timeout": "60s", **kafka_section}})
    path = write_config(tmp / "config.yaml", cfg)
    log = tmp / "logs" / "app.log"
    log.write_text("")
    agent = AgentProcess(path, tmp / "agent.log").start()
    try:
        # The producer can send nothing before it has connected, fetched the topic's metadata and
        # (idempotence) its producer id: one line first, so that the trickle meets a ready producer.
        log.write_text("warm-up line\n")
        consume_all(bootstrap, [topics["logs"]], expected=1, timeout=60)
        for i in range(PACED_LINES):
            with log.open("a") as f:
                f.write(f"trickle line {i}\n")
            time.sleep(PACE)
        records = consume_all(bootstrap, [topics["logs"]], expected=PACED_LINES + 1, timeout=90)
        assert sorted(r.json()["message"] for r in records) == sorted(
            ["warm-up line"] + [f"trickle line {i}" for i in range(PACED_LINES)]
        )
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    first, *trickle = kafka.stored_batches(topics["logs"])
    assert (first.base_offset, first.count) == (0, 1), first
    return trickle


@pytest.mark.parametrize(
    ("adaptive", "batch_timeout", "gathered"),
    [
        # A trickle with adaptive batching: each line leaves at once, in a batch of its own,
        # although the producer's linger (batch_timeout) is 10 s.
        (True, "10s", False),
        # The same trickle without it: the lines wait for batch_timeout and gather in one batch
        # (5 s, longer than the 3 s trickle; the warm-up line waits it too, so no longer).
        (False, "5s", True),
        # Without it and with a short batch_timeout: each line leaves after 20 ms, alone again.
        (False, "20ms", False),
    ],
    ids=["adaptive-linger-10s", "fixed-linger-5s", "fixed-linger-20ms"],
)
def test_a_trickle_leaves_at_once_with_adaptive_batching_and_waits_for_batch_timeout_without(
    adaptive: bool,
    batch_timeout: str,
    gathered: bool,
    tmp_path: Path,
    kafka: LocalKafka,
    bootstrap: str,
    topic_prefix: str,
) -> None:
    batches = paced(
        tmp_path,
        kafka,
        bootstrap,
        topic_prefix,
        {"adaptive_batching": adaptive, "batch_timeout": batch_timeout, "batch_size": 10000},
    )
    counts = [b.count for b in batches]
    print(json.dumps({"adaptive_batching": adaptive, "batch_timeout": batch_timeout, "batches": counts}))
    assert sum(counts) == PACED_LINES
    assert len({b.partition for b in batches}) == 1
    if gathered:
        # All the lines of the trickle (3 s of it) waited in one batch; a stalled writer may
        # split it in two.
        assert len(batches) <= 2, counts
    else:
        # Most lines alone; two lines may share a batch when one arrives while the other is on
        # its way (a busy machine), never more.
        assert len(batches) >= PACED_LINES * 2 // 3, counts
        assert max(counts) <= 2, counts


def test_under_load_batches_fill_to_batch_size_and_never_exceed_it(
    tmp_path: Path, kafka: LocalKafka, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    n = 20_000
    lines = [f"backlog line {i} " + "x" * 40 for i in range(n)]
    records, _ = ship_lines(
        tmp_path,
        bootstrap,
        topics,
        lines,
        sinks={"kafka": {"adaptive_batching": True, "batch_size": 500, "batch_timeout": "1s"}},
    )
    assert len(records) == n
    batches = kafka.stored_batches(topics["logs"])
    counts = [b.count for b in batches]
    full = sum(c for c in counts if c == 500)
    print(json.dumps({"batches": len(counts), "records_in_full_batches": full, "largest": max(counts)}))
    assert sum(counts) == n
    assert max(counts) == 500, counts
    # A backlog keeps the dispatcher busy: no early sends, batches fill up to batch_size.
    assert full >= n * 0.8, counts


def test_a_backlog_larger_than_the_sink_queue_leaves_without_waiting_for_batch_timeout(
    tmp_path: Path, kafka: LocalKafka, bootstrap: str, topic_prefix: str
) -> None:
    """When the sink's queue is full, nothing more is produced until records are acknowledged, so
    lingering records cannot gather into bigger batches: adaptive batching sends them at once.
    Without that, every queue-full of this backlog would wait batch_timeout (120 s) and the 6,000
    lines could not arrive within the minute they are given."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    n = 6000
    lines = [f"queued line {i} " + "y" * 40 for i in range(n)]
    records, _ = ship_lines(
        tmp_path,
        bootstrap,
        topics,
        lines,
        timeout=60,
        # 8 KiB reads: chunks of about 140 lines, about 6 of them fill the sink's room (900).
        files_config={"read_buffer_bytes": 8192},
        sinks={
            "kafka": {
                "adaptive_batching": True,
                "batch_timeout": "120s",
                "batch_size": 100_000,
                "queue_size": 1000,
                "timeout": "300s",
            }
        },
    )
    assert sorted(int(r.json()["message"].split()[2]) for r in records) == list(range(n))
    counts = [b.count for b in kafka.stored_batches(topics["logs"])]
    print(json.dumps({"batches": len(counts), "largest": max(counts)}))
    assert sum(counts) == n and max(counts) <= 1000, counts


def test_an_idle_sinks_poll_thread_sleeps_long_and_new_lines_still_leave(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """With nothing in flight the poll thread sleeps up to 100 ms a round instead of 5 ms (an idle
    agent's CPU), and the dispatcher wakes it when it hands records over."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    path = write_config(tmp_path / "config.yaml", agent_config(tmp_path, bootstrap, topics))
    log = tmp_path / "logs" / "app.log"
    log.write_text("first line\n")
    agent = AgentProcess(path, tmp_path / "agent.log").start()

    def sink() -> dict[str, Any]:
        return dict(agent.get("/stats")["sinks"]["kafka_sink"])

    try:
        consume_all(bootstrap, [topics["logs"]], expected=1, timeout=60)
        wait_until(lambda: sink()["outstanding"] == 0, 30, "the first line's acknowledgement")
        before, started = sink()["poll_rounds"], time.monotonic()
        time.sleep(2)
        idle_rounds, elapsed = sink()["poll_rounds"] - before, time.monotonic() - started
        for round_ in range(3):
            with log.open("a") as f:
                f.writelines(f"line {round_}-{i}\n" for i in range(100))
            records = consume_all(bootstrap, [topics["logs"]], expected=1 + 100 * (round_ + 1), timeout=60)
            wait_until(lambda: sink()["outstanding"] == 0, 30, "the acknowledgements")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    print(json.dumps({"idle_rounds": idle_rounds, "seconds": round(elapsed, 2)}))
    # 5 ms rounds would be about 400 in 2 s (200 on a host so busy that each takes twice as long).
    assert idle_rounds < 50 * elapsed, idle_rounds
    assert len(records) == 301 and len({r.json()["message"] for r in records}) == 301


def test_small_chunks_of_many_files_go_as_one_request_each_record_with_its_own_file(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """The lines of 40 files found at start-up are read together: the sink hands them over in a
    few requests (fewer deliveries than files), and every record still carries its own file's
    source id, labels and key, once."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(tmp_path, bootstrap, topics)
    path = write_config(tmp_path / "config.yaml", cfg)
    expected: dict[str, tuple[str, str]] = {}  # message -> (source id, key)
    for i in range(40):
        log = tmp_path / "logs" / f"svc-{i}.log"
        keyed = f"f{i} keyed"
        plain = f"f{i} plain"
        doc = {"level": "info", "tenant_id": f"t{i}", "msg": keyed}
        log.write_text(json.dumps(doc) + f"\nWARN {plain}\n")
        expected[keyed] = (str(log), f"t{i}")
        expected[f"WARN {plain}"] = (str(log), str(log))
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        records = consume_all(bootstrap, topics.values(), expected=len(expected), timeout=90)
        deliveries = metric(agent.metrics(), "kafka_batch_size_messages_count")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    got: dict[str, tuple[str, str]] = {}
    for r in records:
        doc = r.json()
        message = doc["message"]
        if message.startswith("{"):
            message = json.loads(message)["msg"]
        assert message not in got, f"{message} twice"
        assert r.key is not None
        got[message] = (doc["source_id"], r.key.decode())
    assert got == expected
    assert 0 < deliveries < 40, f"{deliveries:g} deliveries for 40 files"
