"""The Kafka source against the test session's real Kafka broker: topic -> agent (sources.kafka)
-> local_file. Every record arrives; the group's committed offsets reach the end offsets and
never pass a record the sink has not written."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support import AgentProcess, agent_config, topic_set, wait_until, write_config

pytestmark = pytest.mark.integration

PARTITIONS = 3


def make_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        fut.result(30)


def produce(bootstrap: str, topic: str, n: int, start: int = 0) -> None:
    """``n`` records, seq start..start+n-1: even ones in the agent's record shape, odd ones raw."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for i in range(start, start + n):
        if i % 2:
            value = f"raw line seq={i}".encode()
        else:
            value = orjson.dumps(
                {
                    "timestamp": "2026-12-01T10:00:00.000000001Z",
                    "message": f"agent record seq={i}",
                    "level": "warn",
                    "source_type": "file",
                    "source_id": "/var/log/app.log",
                    "labels": {"app": "shop"},
                    "fields": {"user": "u1"},
                }
            )
        p.produce(topic, value, key=str(i).encode(), headers=[("seq", str(i).encode())])
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def end_offsets(
    bootstrap: str, topic: str, partitions: int = PARTITIONS, patience: float = 60
) -> dict[int, int]:
    """Each partition's end offset. A cluster that just lost a broker may fail a request for a while
    (librdkafka drops the handle of a broker the metadata no longer lists: ``_DESTROY_BROKER``):
    asked again, with a new client, for up to ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets-reader"})
        try:
            return {
                p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)
            }
        except KafkaException:
            if time.monotonic() > deadline:
                raise
        finally:
            c.close()
        time.sleep(1)


def committed(bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def written(path: Path) -> list[dict[str, Any]]:
    """The records the local_file sink wrote to ``path`` so far (a line still being written, or
    cut by a kill, is left out)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().split(b"\n")[:-1]]


def records(directory: Path) -> list[dict[str, Any]]:
    return [r for p in sorted(directory.glob("*.log")) for r in written(p)]


def seqs(directory: Path) -> Counter[int]:
    return Counter(int(r["message"].rsplit("=", 1)[1]) for r in records(directory))


def source_health(agent: AgentProcess) -> dict[str, Any]:
    sources = agent.get("/health")["services"]["sources"]
    return next(s for s in sources if s["name"] == "kafka_source")


def read_to_the_end(
    agent: AgentProcess, out: Path, n: int, bootstrap: str, group: str, topic: str
) -> tuple[dict[int, int], dict[str, Any]]:
    """Wait for ``n`` records in ``out`` and the group's offsets at the topic's end; returns the
    end offsets and the source's ``/stats``."""
    wait_until(lambda: sum(seqs(out).values()) >= n, 120, "every record in the local file")
    ends = end_offsets(bootstrap, topic)
    wait_until(lambda: committed(bootstrap, group, topic) == ends, 60, f"the offsets committed to {ends}")
    return ends, agent.get("/stats")["kafka"]


def consumer_config(tmp: Path, bootstrap: str, topic: str, group: str, **kafka: Any) -> Path:
    out = tmp / "out"
    # Heartbeats every 500 ms (librdkafka's default: 3 s): a member learns of a rebalance at its
    # next heartbeat, and a cooperative one takes two rounds, so joins and leaves settle faster.
    options = {"heartbeat.interval.ms": 500, **kafka.pop("librdkafka_options", {})}
    cfg = agent_config(
        tmp,
        bootstrap,
        topic_set(topic.rsplit("-", 1)[0]),
        sinks={
            "kafka": {"enabled": False},
            "local_file": {"enabled": True, "directory": str(out), "filename_pattern": "out.log"},
        },
        kafka={
            "enabled": True,
            "brokers": bootstrap.split(","),
            "group_id": group,
            "topics": [topic],
            "commit_interval": "200ms",
            "session_timeout": "6s",
            "max_poll_interval": "60s",
            "librdkafka_options": options,
            **kafka,
        },
    )
    cfg["sinks"]["kafka"] = {"enabled": False}
    cfg["files_config"] = {"enabled": False}
    return write_config(tmp / "config.yaml", cfg)


def test_every_record_arrives_and_the_offsets_reach_the_end(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    make_topic(bootstrap, topic)
    n = 3000
    produce(bootstrap, topic, n)
    agent = AgentProcess(consumer_config(tmp_path, bootstrap, topic, group), tmp_path / "agent.log").start()
    out = tmp_path / "out"
    try:
        ends, stats = read_to_the_end(agent, out, n, bootstrap, group, topic)
        assert stats["consumed"] == n
        assert stats["in_flight"] == 0
        metrics = agent.metrics()
        assert f'kafka_source_records_consumed_total{{topic="{topic}"}} {float(n)}' in metrics
        for p, end in ends.items():
            assert f'kafka_source_committed_offset{{partition="{p}",topic="{topic}"}} {float(end)}' in metrics
        assert agent.get("/health")["services"]["sources"]
    finally:
        assert agent.stop() == 0, agent.log_path.read_text()
    got = seqs(out)
    assert got == Counter(range(n)), "every record exactly once"
    by_seq = {int(r["message"].rsplit("=", 1)[1]): r for r in records(out)}
    agent_rec, raw_rec = by_seq[10], by_seq[11]
    # The agent's own shape comes back as shipped; a raw value is the message.
    assert agent_rec["source_type"] == "file" and agent_rec["source_id"] == "/var/log/app.log"
    assert agent_rec["labels"] == {"app": "shop"} and agent_rec["level"] == "warn"
    assert agent_rec["timestamp"] == "2026-12-01T10:00:00.000000001Z"
    assert agent_rec["fields"]["user"] == "u1"
    assert raw_rec["source_type"] == "kafka" and raw_rec["source_id"] == topic
    kafka = raw_rec["fields"]["kafka"]
    assert kafka["topic"] == topic and kafka["key"] == "11" and kafka["headers"] == {"seq": "11"}
    assert 0 <= kafka["partition"] < PARTITIONS and isinstance(kafka["offset"], int)
    # A restart reads nothing again: the offsets were committed.
    agent = AgentProcess(agent.config, tmp_path / "agent2.log").start()
    try:
        produce(bootstrap, topic, 10, start=n)
        wait_until(lambda: sum(seqs(out).values()) >= n + 10, 60, "the new records")
    finally:
        assert agent.stop() == 0
    assert seqs(out) == Counter(range(n + 10))


def test_kill_9_twice_loses_nothing(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    make_topic(bootstrap, topic)
    n = 40_000
    max_in_flight, batch = 4000, 1000
    produce(bootstrap, topic, n)
    config = consumer_config(tmp_path, bootstrap, topic, group, max_in_flight=max_in_flight, batch_size=batch)
    out = tmp_path / "out"
    uncommitted = 0
    for kill, at in enumerate((n // 4, n // 2)):
        before = len(records(out)) if out.exists() else 0
        agent = AgentProcess(config, tmp_path / f"agent{kill}.log").start()
        wait_until(lambda at=at: sum(seqs(out).values()) >= at, 120, f"{at} records written")
        agent.stop(signal.SIGKILL)
        # What this run wrote past its last commit is what the next run reads again.
        at_kill = committed(bootstrap, group, topic)
        uncommitted += sum(
            1
            for r in records(out)[before:]
            if r["fields"]["kafka"]["offset"] >= at_kill[r["fields"]["kafka"]["partition"]]
        )
    agent = AgentProcess(config, tmp_path / "agent-last.log").start()
    try:
        wait_until(lambda: set(seqs(out)) == set(range(n)), 180, "every record after two kills")
        ends = end_offsets(bootstrap, topic)
        wait_until(lambda: committed(bootstrap, group, topic) == ends, 60, "the offsets at the end")
    finally:
        assert agent.stop() == 0
    got = seqs(out)
    duplicates = sum(got.values()) - n
    print(f"kill -9 twice: {n} records, {duplicates} read twice, {uncommitted} written past a commit")
    # Read twice: at most what each killed run had written past its last commit (read, in flight
    # or acknowledged since the last commit); never what a commit covered.
    assert 0 <= duplicates <= uncommitted


def test_full_moments_hold_the_source_without_pausing_its_partitions(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """A working sink and a small in-flight budget: the source is full at every moment, and holds
    until acknowledgements make room; it never pauses the partitions (a pause drops librdkafka's
    prefetched records, fetched again on resume)."""
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    make_topic(bootstrap, topic)
    n = 20_000
    produce(bootstrap, topic, n)
    config = consumer_config(tmp_path, bootstrap, topic, group, max_in_flight=500, batch_size=200)
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    out = tmp_path / "out"
    try:
        _, stats = read_to_the_end(agent, out, n, bootstrap, group, topic)
        # 20,000 records through a budget of 500: held at least 40 times, never paused.
        assert stats["consumed"] == n and stats["in_flight"] == 0
        assert stats["pauses"] == 0 and not stats["paused"], stats
        assert stats["skipped_rereads"] == 0
    finally:
        assert agent.stop() == 0, agent.log_path.read_text()
    assert seqs(out) == Counter(range(n))


def test_offsets_do_not_pass_records_the_sink_has_not_written(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    make_topic(bootstrap, topic)
    n = 3000
    out = tmp_path / "out"
    out.mkdir()
    config = consumer_config(
        tmp_path, bootstrap, topic, group, max_in_flight=500, batch_size=200, lag_threshold=1000
    )
    data = yaml.safe_load(config.read_text())
    data["sinks"]["local_file"].update(
        {"timeout": "10m", "dlq_config": {"send_on_timeout": False}, "circuit_breaker": {"enabled": False}}
    )
    write_config(config, data)
    # The directory refuses every write (immutable, as the local_file conformance harness does).
    subprocess.run(["chattr", "+i", str(out)], check=True)
    released = threading.Event()
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        produce(bootstrap, topic, n)
        wait_until(lambda: agent.get("/stats")["kafka"]["paused"], 60, "the partitions to be paused")
        stats = agent.get("/stats")["kafka"]
        assert stats["pauses"] >= 1
        # Held back: no more than the in-flight budget and one poll read, nothing committed.
        assert stats["consumed"] <= 500 + 3 * 200
        assert committed(bootstrap, group, topic) == dict.fromkeys(range(PARTITIONS), -1001)
        assert records(out) == []
        # The lag (of the partitions it read from: none committed) is above lag_threshold.
        wait_until(lambda: source_health(agent)["status"] == "degraded", 30, "the source degraded")
        health = source_health(agent)
        assert 1000 < health["lag"] <= n and "kafka.lag_threshold" in health["message"], health
        subprocess.run(["chattr", "-i", str(out)], check=True)
        released.set()
        wait_until(lambda: sum(seqs(out).values()) >= n, 120, "every record once the directory is writable")
        ends = end_offsets(bootstrap, topic)
        wait_until(lambda: committed(bootstrap, group, topic) == ends, 60, "the offsets at the end")
        assert not agent.get("/stats")["kafka"]["paused"]
        wait_until(lambda: source_health(agent)["status"] == "healthy", 30, "the source healthy again")
    finally:
        if not released.is_set():
            subprocess.run(["chattr", "-i", str(out)], check=False)
        assert agent.stop() == 0
    assert seqs(out) == Counter(range(n))


def test_a_second_consumer_joins_and_one_leaves(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    """Two agents of one group, the second joining while the first runs (cooperative
    rebalance: the first commits what it revokes), then the first stopping: every record
    arrives, and a revocation reads nothing twice once its records were acknowledged."""
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    make_topic(bootstrap, topic, partitions=4)
    n = 30_000
    dirs = [tmp_path / "a", tmp_path / "b"]
    configs = []
    for d in dirs:
        d.mkdir()
        configs.append(consumer_config(d, bootstrap, topic, group, max_in_flight=2000, batch_size=500))
    # The first half while the first agent starts; the second once the second agent has its
    # partitions (the first may have read the whole first half by then).
    producer = threading.Thread(target=produce, args=(bootstrap, topic, n // 2))
    producer.start()
    a = AgentProcess(configs[0], tmp_path / "a.log").start()
    b: AgentProcess | None = None
    try:

        def total() -> int:
            return sum(sum(seqs(d / "out").values()) for d in dirs)

        wait_until(lambda: total() >= 2000, 120, "the first agent to write")
        b = AgentProcess(configs[1], tmp_path / "b.log").start()
        second = b
        wait_until(lambda: second.get("/stats")["kafka"]["partitions"], 120, "the second agent's partitions")
        producer.join(120)
        producer = threading.Thread(target=produce, args=(bootstrap, topic, n - n // 2, n // 2))
        producer.start()
        wait_until(lambda: sum(seqs(dirs[1] / "out").values()) > 0, 120, "the second agent to write")
        producer.join(120)
        assert a.stop() == 0
        wait_until(lambda: total() >= n, 180, "every record")
        ends = end_offsets(bootstrap, topic, 4)
        wait_until(lambda: committed(bootstrap, group, topic, 4) == ends, 60, "the offsets at the end")
        rebalances = b.get("/stats")["kafka"]["rebalances"]
        assert rebalances >= 2, rebalances  # its first assignment, then the first agent's partitions
    finally:
        producer.join(120)
        if a.proc is not None and a.proc.poll() is None:
            a.stop()
        if b is not None:
            assert b.stop() == 0
    got = seqs(dirs[0] / "out") + seqs(dirs[1] / "out")
    assert set(got) == set(range(n))
    duplicates = sum(got.values()) - n
    print(f"two consumers, a join and a leave: {n} records, {duplicates} read twice")
    # Graceful rebalances wait for what the revoked partitions have in flight and commit it.
    assert duplicates == 0


def test_a_member_without_partitions_is_degraded(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    make_topic(bootstrap, topic, partitions=1)
    agents = []
    try:
        for name in ("a", "b"):
            d = tmp_path / name
            d.mkdir()
            agents.append(
                AgentProcess(consumer_config(d, bootstrap, topic, group), tmp_path / f"{name}.log").start()
            )
            if name == "a":
                wait_until(lambda: source_health(agents[0])["assigned"] == 1, 60, "the partition assigned")
        # One partition, two members: the second has none, and says so after session_timeout.
        wait_until(lambda: source_health(agents[1])["status"] == "degraded", 60, "the idle member degraded")
        assert "no partition assigned" in source_health(agents[1])["message"]
        assert source_health(agents[0])["status"] == "healthy"
    finally:
        for agent in agents:
            assert agent.stop() == 0


def test_values_that_are_not_records_are_parked_and_the_offsets_move_on(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    make_topic(bootstrap, topic, partitions=1)
    p = Producer({"bootstrap.servers": bootstrap})
    good = 0
    for i in range(300):
        if i % 100 == 7:
            p.produce(topic, b"not json at all")
        elif i % 100 == 8:
            p.produce(topic, b'{"no_message": true}')
        else:
            p.produce(topic, orjson.dumps({"message": f"json seq={i}"}))
            good += 1
    assert p.flush(30) == 0
    config = consumer_config(tmp_path, bootstrap, topic, group, format="json")
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    out = tmp_path / "out"
    try:
        wait_until(lambda: sum(seqs(out).values()) >= good, 60, "the good records")
        ends = end_offsets(bootstrap, topic, 1)
        wait_until(lambda: committed(bootstrap, group, topic, 1) == ends, 60, "the offsets past the bad ones")
        assert agent.get("/stats")["kafka"]["rejected"] == 6
        metrics = agent.metrics()
        assert 'kafka_source_records_rejected_total{outcome="parked",reason="not_an_object"} 3.0' in metrics
        assert 'kafka_source_records_rejected_total{outcome="parked",reason="missing_message"} 3.0' in metrics
    finally:
        assert agent.stop() == 0
    parked = [
        orjson.loads(line)
        for f in (tmp_path / "dlq").glob("dlq_entry_*.json")
        for line in f.read_bytes().splitlines()
    ]
    assert len(parked) == 6
    assert {e["failed_sink"] for e in parked} == {"kafka_source"}
    assert {e["error_type"] for e in parked} == {"invalid_record"}
    offsets = sorted(e["original_entry"]["kafka"]["offset"] for e in parked)
    assert offsets == [7, 8, 107, 108, 207, 208]
    assert any("not a JSON object" in e["error_message"] for e in parked)
    assert seqs(out) == Counter(i for i in range(300) if i % 100 not in (7, 8))


def test_topics_by_regular_expression(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    group = f"{topic_prefix}-g"
    names = [f"{topic_prefix}-app-{i}" for i in range(2)]
    for name in names:
        make_topic(bootstrap, name, partitions=1)
    make_topic(bootstrap, f"{topic_prefix}-other", partitions=1)
    for k, name in enumerate([*names, f"{topic_prefix}-other"]):
        produce(bootstrap, name, 100, start=k * 100)
    config = consumer_config(tmp_path, bootstrap, names[0], group, topics=[f"^{topic_prefix}-app-[0-9]+$"])
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    out = tmp_path / "out"
    try:
        wait_until(lambda: sum(seqs(out).values()) >= 200, 60, "the records of both matching topics")
        time.sleep(1)
    finally:
        assert agent.stop() == 0
    assert seqs(out) == Counter(range(200)), "the records of the matching topics only, once"
    assert {r["fields"]["kafka"]["topic"] for r in records(out)} == set(names)


def test_three_consumers_one_killed(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    """Two agents share a topic, a third joins, then one is killed with SIGKILL while records
    flow: its partitions go to the others after session_timeout, from its last commit. Nothing
    is lost; what it had read since is read again (counted)."""
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    make_topic(bootstrap, topic, partitions=6)
    max_in_flight, batch, burst = 2000, 500, 500
    dirs = [tmp_path / name for name in "abc"]
    agents: list[AgentProcess] = []
    killed = threading.Event()
    flow = {"produced": 0, "after_kill": 0}

    def paced() -> None:
        """Bursts of records until the kill and for five bursts after it (at most 150 bursts)."""
        for _ in range(150):
            produce(bootstrap, topic, burst, start=flow["produced"])
            flow["produced"] += burst
            if killed.is_set():
                flow["after_kill"] += 1
                if flow["after_kill"] == 5:
                    return
            time.sleep(0.05)

    producer = threading.Thread(target=paced)

    def total() -> int:
        return sum(sum(seqs(d / "out").values()) for d in dirs)

    try:
        for i, d in enumerate(dirs):
            d.mkdir()
            cfg = consumer_config(d, bootstrap, topic, group, max_in_flight=max_in_flight, batch_size=batch)
            agents.append(AgentProcess(cfg, tmp_path / f"{d.name}.log").start())
            if i == 1:
                producer.start()
            if i >= 1:
                # Each member has partitions and the records flow, first with two, then three.
                wait_until(
                    lambda i=i: source_health(agents[i])["assigned"] > 0, 60, f"agent {i + 1}'s partitions"
                )
                wait_until(lambda i=i: total() >= 2000 * i, 120, f"records with {i + 1} agents")
        owned = {int(k.rsplit(":", 1)[1]) for k in agents[0].get("/stats")["kafka"]["partitions"]}
        agents[0].stop(signal.SIGKILL)
        killed.set()
        # Its last commits: the others resume its partitions from there (after session_timeout).
        at_kill = committed(bootstrap, group, topic, 6)
        producer.join(120)
        assert flow["after_kill"] == 5, f"the records stopped flowing before the kill: {flow}"
        n = flow["produced"]
        wait_until(
            lambda: (
                len(set(seqs(dirs[0] / "out")) | set(seqs(dirs[1] / "out")) | set(seqs(dirs[2] / "out"))) == n
            ),
            180,
            "every record",
        )
        ends = end_offsets(bootstrap, topic, 6)
        wait_until(lambda: committed(bootstrap, group, topic, 6) == ends, 60, "the offsets at the end")
    finally:
        producer.join(120)
        for agent in agents[1:]:
            assert agent.stop() == 0
    got = seqs(dirs[0] / "out") + seqs(dirs[1] / "out") + seqs(dirs[2] / "out")
    assert set(got) == set(range(n))
    duplicates = sum(got.values()) - n
    print(f"three consumers, one killed: {n} records, {duplicates} read twice")
    # At most what the killed agent had written past its last commit (what it had read and not
    # committed), and a batch per partition for the rebalance when the third agent joined.
    uncommitted = sum(
        1
        for r in records(dirs[0] / "out")
        # (never committed: -1001, every record it wrote)
        if r["fields"]["kafka"]["offset"] >= at_kill[r["fields"]["kafka"]["partition"]]
    )
    print(f"the killed agent had written {uncommitted} records past its last commit ({at_kill})")
    assert duplicates <= uncommitted + batch * 6
    # Its partitions went on with the others, from its last commit.
    survivors = records(dirs[1] / "out") + records(dirs[2] / "out")
    taken_over = {
        r["fields"]["kafka"]["partition"]
        for r in survivors
        if r["fields"]["kafka"]["partition"] in owned
        and r["fields"]["kafka"]["offset"] >= at_kill[r["fields"]["kafka"]["partition"]]
    }
    assert owned and taken_over == owned, (owned, taken_over)
