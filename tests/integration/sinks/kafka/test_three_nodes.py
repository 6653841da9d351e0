"""A three-node cluster: replication 3, min.insync.replicas 2, acks=all; a broker dies mid-stream."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from log_capturer.devtools.kafka_local import LocalKafka
from log_capturer.devtools.topics import TOPICS
from tests.integration.sinks.kafka.util import metric
from tests.integration.sources.test_kafka_source import (
    committed,
    consumer_config,
    end_offsets,
    produce,
    records,
    seqs,
    source_health,
)
from tests.support import (
    AgentProcess,
    Rec,
    agent_config,
    consume_all,
    create_prefixed_topics,
    free_port_base,
    run_cli,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """Started as a user would: `log-capturer kafka up --nodes 3` (nodes on port, port+1, port+2;
    controllers on port+100...), stopped with `kafka down`."""
    work = tmp_path_factory.mktemp("kafka3")
    port = free_port_base((0, 1, 2, 100, 101, 102))
    up = ("kafka", "up", "--nodes", "3", "--port", str(port), "--workdir", str(work), "--timeout", "180")
    proc = run_cli(*up, check=False, timeout=300)
    if proc.returncode != 0:
        run_cli("kafka", "down", "--workdir", str(work), check=False)
        pytest.fail(
            f"`log-capturer {' '.join(up)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}",
            pytrace=False,
        )
    yield LocalKafka(work, nodes=3, port=port)
    down = run_cli("kafka", "down", "--workdir", str(work), check=False)
    assert down.returncode == 0 and down.stdout.strip() == "stopped", down


def test_kafka_up_started_three_nodes(cluster: LocalKafka) -> None:
    status = json.loads(run_cli("kafka", "status", "--workdir", str(cluster.workdir)).stdout)
    port = cluster.port
    assert status["state"] == "up", status
    assert status["bootstrap"] == ",".join(f"127.0.0.1:{port + i}" for i in range(3))
    assert [(n["node_id"], n["port"], n["running"]) for n in status["nodes"]] == [
        (i + 1, port + i, True) for i in range(3)
    ]
    state = cluster.load_state()
    assert state is not None
    assert len(AdminClient({"bootstrap.servers": state.bootstrap}).list_topics(timeout=30).brokers) == 3


def test_create_topics_with_replication_for_a_cluster(cluster: LocalKafka) -> None:
    state = cluster.load_state()
    assert state is not None
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "log_capturer",
            "kafka",
            "create-topics",
            "--bootstrap",
            state.bootstrap,
            "--replication-factor",
            "3",
            "--min-insync-replicas",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    admin = AdminClient({"bootstrap.servers": state.bootstrap})
    md = admin.list_topics(timeout=30)
    for spec in TOPICS:
        parts = md.topics[spec.name].partitions
        assert len(parts) == spec.partitions
        assert all(len(p.replicas) == 3 for p in parts.values())
    futures = admin.describe_configs([ConfigResource("topic", t.name) for t in TOPICS])
    for fut in futures.values():
        assert fut.result()["min.insync.replicas"].value == "2"


def test_a_broker_killed_mid_stream_loses_duplicates_and_reorders_nothing(
    tmp_path: Path, cluster: LocalKafka, topic_prefix: str
) -> None:
    state = cluster.load_state()
    assert state is not None
    bootstrap = state.bootstrap
    topics = create_prefixed_topics(bootstrap, topic_prefix, replication_factor=3, min_isr=2)
    # send_on_timeout false: a record is never parked for replay later, so the order is kept.
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        sinks={"kafka": {"required_acks": -1, "dlq_config": {"send_on_timeout": False}}},
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    levels = ["ERROR", "WARN", "INFO", "DEBUG", "NOTE"]
    lines = [f"{levels[i % 5]} replicated line {i} tenant_id=t{i % 13}" for i in range(100_000)]
    (tmp_path / "logs" / "app.log").write_text("".join(f"{line}\n" for line in lines))
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    victim = 2
    try:
        wait_until(
            lambda: agent.get("/stats")["sinks"]["kafka_sink"]["delivered"] >= 10_000,
            120,
            "the first 10,000 deliveries",
        )
        delivered_at_kill = agent.get("/stats")["sinks"]["kafka_sink"]["delivered"]
        cluster.stop_node(victim, signal.SIGKILL)
        admin = AdminClient({"bootstrap.servers": bootstrap})

        def leaders_moved() -> bool:
            md = admin.list_topics(timeout=10)
            return all(
                p.leader not in (victim, -1)
                for t in topics.values()
                for p in md.topics[t].partitions.values()
            )

        wait_until(leaders_moved, 60, "leadership to move off the killed broker")
        records = consume_all(bootstrap, topics.values(), expected=len(lines), timeout=240)
        stats = agent.get("/stats")["sinks"]["kafka_sink"]
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
        cluster.start_node(victim, timeout=180)
    counts = Counter(r.json()["message"] for r in records)
    missing = [line for line in lines if line not in counts]
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    disorder = out_of_order(records)
    print(
        json.dumps(
            {
                "lines": len(lines),
                "delivered_before_kill": delivered_at_kill,
                "records_read": len(records),
                "missing": len(missing),
                "duplicates": duplicates,
                "out_of_order": len(disorder),
                "keys_checked": len({(r.topic, r.partition, r.key) for r in records}),
                "retried": stats["retried"],
            }
        )
    )
    assert not missing, f"{len(missing)} lines missing, e.g. {missing[:3]}"
    assert duplicates == 0, f"{duplicates} duplicated records with the idempotent producer"
    assert not disorder, f"{len(disorder)} records out of order, e.g. {disorder[:3]}"


def out_of_order(records: list[Rec]) -> list[str]:
    """Records whose line number is below that of the record before them with the same key in the
    same partition (in offset order): the file's order for one key must survive the failover.
    (A repeat of the same line is a duplicate, counted apart.)"""
    last: dict[tuple[str, int, bytes | None], int] = {}
    bad: list[str] = []
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        numbered = re.search(r" line (\d+)", r.json()["message"])
        if numbered is None:
            continue
        seq = int(numbered[1])
        k = (r.topic, r.partition, r.key)
        if k in last and seq < last[k]:
            bad.append(f"{r.topic}[{r.partition}]@{r.offset} key={r.key!r}: line {seq} after line {last[k]}")
        last[k] = seq
    return bad


def test_retry_max_decides_whether_librdkafka_or_the_sink_retries(
    tmp_path: Path, cluster: LocalKafka, topic_prefix: str
) -> None:
    """Topics with replication 3 and min.insync.replicas 3 refuse acks=all writes while a broker is
    down (NOT_ENOUGH_REPLICAS, a retriable error). Two agents write to them meanwhile:

    - ``retry_max: 1000000``: librdkafka retries each request itself, with the same producer id and
      sequence numbers; the sink never sees an error, and once the broker is back every line
      arrives once, in file order.
    - ``retry_max: 0``: librdkafka gives up after one retry (the least idempotence allows); the
      errors reach the sink, which counts them and produces the records again itself, later: every
      line arrives, but the file order is no longer guaranteed.
    """
    state = cluster.load_state()
    assert state is not None
    bootstrap = state.bootstrap
    victim = 3
    n = 2000
    retry_max = {"librdkafka": 1_000_000, "sink": 0}
    lines = {name: [f"WARN {name} line {i}" for i in range(n)] for name in retry_max}
    topics: dict[str, dict[str, str]] = {}
    logs: dict[str, Path] = {}
    agents: dict[str, AgentProcess] = {}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        for name, retries in retry_max.items():
            topics[name] = create_prefixed_topics(
                bootstrap, f"{topic_prefix}{name[0]}", replication_factor=3, min_isr=3
            )
            tmp = tmp_path / name
            kafka = {
                "required_acks": -1,
                "retry_max": retries,
                "timeout": "120s",
                "dlq_config": {"send_on_timeout": False},
                "circuit_breaker": {"enabled": False},
            }
            cfg = agent_config(tmp, bootstrap, topics[name], sinks={"kafka": kafka})
            logs[name] = tmp / "logs" / "app.log"
            logs[name].write_text("WARN warm-up\n")
            agents[name] = AgentProcess(write_config(tmp / "config.yaml", cfg), tmp / "agent.log").start()
        for name in agents:
            consume_all(bootstrap, topics[name].values(), expected=1, timeout=60)
        ours = [t for name in topics for t in topics[name].values()]
        cluster.stop_node(victim)
        try:

            def isr_shrunk() -> bool:
                md = admin.list_topics(timeout=10)
                return all(len(p.isrs) == 2 for t in ours for p in md.topics[t].partitions.values())

            wait_until(isr_shrunk, 60, "the in-sync replicas to shrink to 2")
            for name, text in lines.items():
                with logs[name].open("a") as f:
                    f.write("".join(f"{line}\n" for line in text))
            refused, held = agents["sink"], agents["librdkafka"]
            wait_until(
                lambda: refused.get("/stats")["sinks"]["kafka_sink"]["retried"] > 0,
                60,
                "the sink to retry records itself, with retry_max 0",
            )
            refused_errors = refused.metrics()
            held_errors = metric(held.metrics(), "kafka_producer_errors_total")
            held_stats = held.get("/stats")["sinks"]["kafka_sink"]
        finally:
            cluster.start_node(victim, timeout=180)
        received = {}
        for name, agent in agents.items():
            received[name] = consume_all(bootstrap, topics[name].values(), expected=n + 1, timeout=180)
            assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        for agent in agents.values():
            if agent.proc is not None and agent.proc.poll() is None:
                agent.kill()
    counts = {name: Counter(r.json()["message"] for r in recs) for name, recs in received.items()}
    print(
        json.dumps(
            {
                "retry_max_1000000": {
                    "producer_errors": held_errors,
                    "sink_retries": held_stats["retried"],
                    "out_of_order": len(out_of_order(received["librdkafka"])),
                },
                "retry_max_0": {
                    "producer_errors": metric(refused_errors, "kafka_producer_errors_total"),
                    "not_enough_replicas": metric(
                        refused_errors, "kafka_producer_errors_total", error_type="not_enough_replicas"
                    ),
                    "duplicates": sum(c - 1 for c in counts["sink"].values()),
                    "out_of_order": len(out_of_order(received["sink"])),
                },
            }
        )
    )
    assert metric(refused_errors, "kafka_producer_errors_total") > 0
    assert held_errors == 0 and held_stats["retried"] == 0, held_stats
    for name, text in lines.items():
        assert set(counts[name]) == {"WARN warm-up", *text}, name
    assert max(counts["librdkafka"].values()) == 1
    in_log_order = sorted(received["librdkafka"], key=lambda r: (r.partition, r.offset))
    assert [r.json()["message"] for r in in_log_order] == ["WARN warm-up", *lines["librdkafka"]]


def test_exactly_once_across_a_broker_killed_mid_stream(
    tmp_path: Path, cluster: LocalKafka, topic_prefix: str
) -> None:
    """``delivery: exactly_once`` while one of three brokers is killed (SIGKILL): read back
    read_committed, every line once, in order. An aborted transaction ends the agent (75); it is
    started again here, as its supervisor would."""
    from log_capturer.sinks.kafka.transactions import EXIT_ABORTED
    from tests.integration.sinks.kafka.test_exactly_once import (
        caught_up,
        check_exactly_once,
        eos_config,
        read_committed,
    )

    state = cluster.load_state()
    assert state is not None
    bootstrap = state.bootstrap
    topics = create_prefixed_topics(bootstrap, topic_prefix, replication_factor=3, min_isr=2)
    path = write_config(
        tmp_path / "config.yaml", eos_config(tmp_path, bootstrap, topics, f"{topic_prefix}-3n")
    )
    log = tmp_path / "logs" / "app.log"
    total = 100_000
    log.write_text("".join(f'{{"seq": {i}, "msg": "replicated line {i}"}}\n' for i in range(total)))
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    victim = 2
    restarts = 0
    try:
        wait_until(
            lambda: agent.get("/stats")["sinks"]["kafka_sink"]["delivered"] >= 10_000,
            120,
            "the first 10,000 deliveries",
        )
        cluster.stop_node(victim, signal.SIGKILL)
        deadline = time.monotonic() + 240
        while True:
            assert agent.proc is not None
            code = agent.proc.poll()
            if code is not None:
                assert code == EXIT_ABORTED, f"the agent exited {code}:\n{agent.log()}"
                restarts += 1
                agent = AgentProcess(path, tmp_path / "agent.log").start()
            if caught_up(agent, [log]):
                break
            assert time.monotonic() < deadline, f"not caught up:\n{agent.log()}"
            time.sleep(0.5)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
        cluster.start_node(victim, timeout=180)
    report = check_exactly_once(read_committed(bootstrap, topics["logs"]), [log], total)
    print(json.dumps({"per_file": report, "restarts_after_abort": restarts}))


def test_a_consumer_loses_nothing_when_the_group_coordinator_broker_is_killed(
    tmp_path: Path, cluster: LocalKafka, topic_prefix: str
) -> None:
    """The Kafka source (sources.kafka -> local_file) reading a topic with replication 3 while
    records are produced and the broker that coordinates its group (and leads whichever of its
    partitions it leads) is killed with SIGKILL: the consumer finds the new coordinator and leaders, every
    record arrives, the group's offsets still reach the end, and what was read twice is counted."""
    state = cluster.load_state()
    assert state is not None
    bootstrap = state.bootstrap
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})]).values():
        fut.result(30)
    n, max_in_flight, batch = 20_000, 2000, 500
    # session_timeout 15s: long enough for the group to find its new coordinator (a KRaft broker is
    # fenced after 3 s, then the group is loaded on another); with 6 s the member is sometimes
    # dropped first, and then reads again everything it had not committed before the kill.
    config = consumer_config(
        tmp_path,
        bootstrap,
        topic,
        group,
        max_in_flight=max_in_flight,
        batch_size=batch,
        session_timeout="15s",
    )
    out = tmp_path / "out"
    producer = threading.Thread(target=produce, args=(bootstrap, topic, n))
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    victim = 0
    leads: list[int] = []
    at_kill: dict[int, int] = {}
    try:
        producer.start()
        wait_until(lambda: sum(seqs(out).values()) >= 4000, 120, "4,000 records written")
        assert source_health(agent)["assigned"] == 3
        victim = admin.describe_consumer_groups([group])[group].result(30).coordinator.id
        md = admin.list_topics(topic, timeout=10)
        leads = sorted(p.id for p in md.topics[topic].partitions.values() if p.leader == victim)
        at_kill = committed(bootstrap, group, topic)
        cluster.stop_node(victim, signal.SIGKILL)
        producer.join(180)
        assert not producer.is_alive(), "the producer did not flush within 3 minutes"
        wait_until(lambda: set(seqs(out)) == set(range(n)), 180, "every record with a broker down")
        ends = end_offsets(bootstrap, topic)
        try:
            wait_until(
                lambda: committed(bootstrap, group, topic) == ends, 90, f"the offsets committed to {ends}"
            )
        except AssertionError as exc:
            # What the source acknowledged and saw committed, against what the broker has.
            raise AssertionError(
                f"{exc}: the group has {committed(bootstrap, group, topic)}; the source: "
                f"{agent.get('/stats')['kafka']}\n{agent.log(60)}"
            ) from None
        stats = agent.get("/stats")["kafka"]
    finally:
        producer.join(180)
        try:
            assert agent.stop() == 0, agent.log()
        finally:
            if victim:
                cluster.start_node(victim, timeout=180)
    got = seqs(out)
    duplicates = sum(got.values()) - n
    # Records read past the group's commit at the kill (the most a lost membership reads again).
    offsets = {(r["fields"]["kafka"]["partition"], r["fields"]["kafka"]["offset"]) for r in records(out)}
    uncommitted = sum(1 for p, o in offsets if o >= at_kill[p])
    print(
        json.dumps(
            {
                "records": n,
                "killed_broker": victim,
                "partitions_it_led": leads,
                "committed_at_kill": at_kill,
                "read_twice": duplicates,
                "read_past_the_commit_at_kill": uncommitted,
                "rebalances": stats["rebalances"],
            }
        )
    )
    assert set(got) == set(range(n))
    # Never read again: what was committed when the broker died. And without a rebalance after
    # the first assignment (the member kept its partitions), nothing at all.
    assert duplicates <= uncommitted
    if stats["rebalances"] == 1:
        assert duplicates == 0
