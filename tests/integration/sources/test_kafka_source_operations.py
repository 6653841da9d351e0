"""The Kafka source under the agent's operations, against the test session's real Kafka broker:
several worker processes (``app.workers``: each worker one member of the consumer group) and a
configuration reload (SIGHUP) while records flow."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.integration.sources.test_kafka_source import (
    committed,
    consumer_config,
    end_offsets,
    make_topic,
    produce,
    records,
    seqs,
    written,
)
from tests.support import AgentProcess, wait_until, write_config

pytestmark = pytest.mark.integration


def test_two_workers_are_two_members_of_the_group(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    """``app.workers: 2``: each worker consumes as a member of the group, the partitions are
    spread over both, every record is written once and the offsets reach the end. A worker
    killed with SIGKILL while records flow is restarted by the supervisor and takes partitions
    again; nothing is lost, and what is read twice is what it had written past its last commit."""
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    make_topic(bootstrap, topic, partitions=4)
    n, more = 8000, 4000
    config = consumer_config(tmp_path, bootstrap, topic, group, batch_size=500)
    data = yaml.safe_load(config.read_text())
    data["app"]["workers"] = 2
    data["sinks"]["local_file"]["filename_pattern"] = "out-{worker}.log"
    write_config(config, data)
    out = tmp_path / "out"
    agent = AgentProcess(config, tmp_path / "agent.log").start()

    def assigned() -> list[int]:
        sources = agent.get("/health")["services"]["sources"]
        return sorted(s["assigned"] for s in sources if s["name"] == "kafka_source")

    def trickle() -> None:
        for start in range(n, n + more, 1000):
            produce(bootstrap, topic, 1000, start=start)
            time.sleep(0.3)

    producer = threading.Thread(target=trickle)
    try:
        # Both workers are members with partitions of their own: 2 + 2 of the 4.
        wait_until(lambda: assigned() == [2, 2], 60, "two partitions for each worker")
        produce(bootstrap, topic, n)
        wait_until(lambda: sum(seqs(out).values()) >= n, 120, "every record in the workers' files")
        ends = end_offsets(bootstrap, topic, 4)
        wait_until(lambda: committed(bootstrap, group, topic, 4) == ends, 60, "the offsets at the end")
        stats = agent.get("/stats")
        per_worker = [w["stats"]["kafka"] for w in stats["workers"]]
        metrics = agent.metrics()
        assert seqs(out) == Counter(range(n)), "every record exactly once"

        producer.start()
        wait_until(lambda: sum(seqs(out).values()) >= n + 1000, 60, "records flowing again")
        workers = agent.get("/health")["checks"]["workers"]["workers"]
        os.kill(next(w["pid"] for w in workers if w["index"] == 1), signal.SIGKILL)
        killed = written(out / "out-1.log")
        at_kill = committed(bootstrap, group, topic, 4)
        # What the killed worker wrote past its last commit is what its successor reads again.
        uncommitted = sum(
            1 for r in killed if r["fields"]["kafka"]["offset"] >= at_kill[r["fields"]["kafka"]["partition"]]
        )
        producer.join(60)
        wait_until(lambda: set(seqs(out)) == set(range(n + more)), 120, "every record after the kill")
        ends = end_offsets(bootstrap, topic, 4)
        wait_until(lambda: committed(bootstrap, group, topic, 4) == ends, 60, "the offsets at the end")
        wait_until(lambda: assigned() == [2, 2], 60, "the restarted worker's partitions")
        restarts = agent.get("/health")["checks"]["workers"]["restarts"]
    finally:
        if producer.is_alive():
            producer.join(60)
        assert agent.stop() == 0, agent.log()
    assert all(w["consumed"] > 0 for w in per_worker), per_worker
    assert stats["kafka"]["consumed"] == n
    owners = [set(w["partitions"]) for w in per_worker]
    assert not owners[0] & owners[1], owners
    for worker in (0, 1):
        assert f'kafka_source_records_consumed_total{{worker="{worker}",topic="{topic}"}}' in metrics
    files = sorted(p.name for p in out.glob("*.log"))
    assert files == ["out-0.log", "out-1.log"], files
    assert restarts == 1
    got = seqs(out)
    duplicates = sum(got.values()) - (n + more)
    print(f"two workers, one killed: {n + more} records, {duplicates} read twice ({uncommitted} uncommitted)")
    assert 0 <= duplicates <= uncommitted


def test_a_reload_changing_the_topics_and_the_sink_loses_nothing(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """SIGHUP twice while records flow: first the sink's settings change (the source keeps its
    partitions), then the topics (the source is stopped, commits what was acknowledged, leaves
    the group and a new member subscribes to both topics). Nothing is lost; what is read again
    is at most what was read and not acknowledged at the reload."""
    topic, other, group = f"{topic_prefix}-logs", f"{topic_prefix}-more", f"{topic_prefix}-g"
    make_topic(bootstrap, topic)
    make_topic(bootstrap, other)
    n = 12_000
    config = consumer_config(
        tmp_path, bootstrap, topic, group, batch_size=500, max_in_flight=2000, revoke_timeout="20s"
    )
    out = tmp_path / "out"

    def trickle() -> None:  # about 5 s of records, so that both reloads happen while they flow
        for start in range(0, n, 1000):
            produce(bootstrap, topic, 1000, start=start)
            time.sleep(0.4)

    def reloaded() -> int:
        prefix = 'config_reloads_total{status="reloaded"} '
        line = next((x for x in agent.metrics().splitlines() if x.startswith(prefix)), prefix + "0")
        return int(float(line.rsplit(" ", 1)[1]))

    producer = threading.Thread(target=trickle)
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        producer.start()
        wait_until(lambda: sum(seqs(out).values()) >= n // 6, 60, "records before the first reload")
        data = yaml.safe_load(config.read_text())
        data["sinks"]["local_file"]["filename_pattern"] = "second.log"
        write_config(config, data)
        agent.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_until(lambda: reloaded() == 1, 30, "the first reload")
        wait_until((out / "second.log").exists, 60, "the sink's new file")
        wait_until(lambda: sum(seqs(out).values()) >= n // 3, 60, "records before the second reload")
        assert agent.get("/stats")["kafka"]["rebalances"] == 1  # its first assignment only
        assert producer.is_alive(), "the records should still flow at the second reload"
        data["kafka"]["topics"] = [topic, other]
        write_config(config, data)
        sent = time.monotonic()
        agent.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_until(lambda: reloaded() == 2, 30, "the second reload")
        # It waits for what was handed over, not for what the stopped source never handed over
        # (that would be revoke_timeout, 20 s).
        took = time.monotonic() - sent
        assert took < 10, f"the reload took {took:.1f}s"
        produce(bootstrap, other, 1000, start=n)
        producer.join(120)
        wait_until(lambda: set(seqs(out)) == set(range(n + 1000)), 120, "every record of both topics")
        ends = end_offsets(bootstrap, topic)
        wait_until(lambda: committed(bootstrap, group, topic) == ends, 60, "the offsets at the end")
        ends_other = end_offsets(bootstrap, other)
        wait_until(lambda: committed(bootstrap, group, other) == ends_other, 60, "the new topic's offsets")
    finally:
        producer.join(120)
        assert agent.stop() == 0, agent.log()
    got = seqs(out)
    duplicates = sum(got.values()) - (n + 1000)
    print(f"kafka source, two reloads while records flow: {n + 1000} records, {duplicates} read twice")
    # The reload waits for every record handed over to be acknowledged and commits it: what is
    # read twice is only what the stopped source had read and not handed over (a poll per
    # partition at most).
    assert 0 <= duplicates <= 3 * 500, duplicates
    assert {r["fields"]["kafka"]["topic"] for r in records(out)} == {topic, other}
