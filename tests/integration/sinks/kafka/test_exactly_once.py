"""``sinks.kafka.delivery: exactly_once`` against the real broker: the agent killed with SIGKILL at
random moments, then everything read back with a read_committed consumer: nothing lost, nothing
twice, each file's lines in order."""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from log_capturer.sinks.kafka.transactions import EXIT_FENCED, AbortLog
from tests.integration.reliability.conftest import generate, metric
from tests.support import AgentProcess, agent_config, create_prefixed_topics, wait_until, write_config

pytestmark = pytest.mark.integration

FILES = 2
LINES = 60_000  # per file
RATE = 3000  # lines/s per file
KILLS = 3


def read_committed(bootstrap: str, topic: str, timeout: float = 120.0) -> list[Any]:
    """Every record of ``topic`` a read_committed consumer sees, up to the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-eos-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        md = consumer.list_topics(topic, timeout=30)
        parts = sorted(md.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        pending = set(parts)
        out = []
        deadline = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, f"partitions {pending} of {topic} not read to their end"
            for m in consumer.consume(10000, 1.0):
                err = m.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(m.partition())
                elif err is None:
                    out.append(m)
        return out
    finally:
        consumer.close()


def caught_up(agent: AgentProcess, files: list[Path]) -> bool:
    """The agent's acknowledged positions are at the end of every file."""
    try:
        entries = agent.get("/positions")["files"]
    except OSError:  # it just ended (an aborted transaction): not caught up
        return False
    return all(entries.get(str(f), {}).get("offset") == f.stat().st_size for f in files)


def eos_config(
    tmp: Path, bootstrap: str, topics: dict[str, str], tid: str, native: bool = True
) -> dict[str, Any]:
    return agent_config(
        tmp,
        bootstrap,
        topics,
        http_ingest={"enabled": False},
        sinks={
            "kafka": {
                "delivery": "exactly_once",
                "native_producer": native,
                "exactly_once": {
                    "transactional_id": tid,
                    "positions_topic": topics["log-capturer-positions"],
                    "transaction_timeout": "20s",
                },
                # One topic, one key per file (its source_id): a file's lines in one partition.
                "priority_routing": {"enabled": False},
                "partitioning": {"key_field": "no_such_field"},
            }
        },
    )


def check_exactly_once(records: list[Any], files: list[Path], lines: int) -> dict[str, int]:
    """Every file's lines once each, in order (they are in one partition: offset order)."""
    by_file: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for m in records:
        rec = orjson.loads(m.value())
        seq = int(orjson.loads(rec["message"])["seq"])
        by_file[rec["source_id"]].append((m.partition(), m.offset(), seq))
    assert sorted(by_file) == sorted(str(f) for f in files), sorted(by_file)
    report: dict[str, int] = {}
    for name, rows in by_file.items():
        assert len({p for p, _, _ in rows}) == 1, f"{name}: in several partitions"
        got = [seq for _, _, seq in sorted(rows)]
        missing = sorted(set(range(lines)) - set(got))
        dup = len(got) - len(set(got))
        assert not missing, f"{name}: {len(missing)} lines lost, e.g. {missing[:5]}"
        twice = sorted(seq for seq, n in collections.Counter(got).items() if n > 1)
        assert dup == 0, f"{name}: {dup} lines twice, e.g. {twice[:5]} ... {twice[-5:]}"
        assert got == list(range(lines)), f"{name}: out of order"
        report[name] = len(got)
    return report


@pytest.mark.parametrize("native", [True, False], ids=["chunk-producer", "confluent-producer"])
def test_sigkill_three_times_then_read_committed_sees_every_line_once_in_order(
    tmp_path: Path, bootstrap: str, topic_prefix: str, native: bool
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = eos_config(tmp_path, bootstrap, topics, f"{topic_prefix}-agent", native)
    path = write_config(tmp_path / "config.yaml", cfg)
    files = [tmp_path / "logs" / f"app-{i}.log" for i in range(FILES)]
    writers = [generate(f, RATE, count=LINES, seed=i + 1) for i, f in enumerate(files)]
    rnd = random.Random(20261206)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    kills = []
    try:
        for _ in range(KILLS):
            time.sleep(1.5 + rnd.uniform(0, 4))
            kills.append(agent.get("/stats")["files"]["lines_read"])
            agent.kill()
            agent = AgentProcess(path, tmp_path / "agent.log").start()
        for w in writers:
            assert w.wait(120) == 0
        wait_until(lambda: caught_up(agent, files), 120, "every line read and acknowledged")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        for w in writers:
            w.kill()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    records = read_committed(bootstrap, topics["logs"])
    report = check_exactly_once(records, files, LINES)
    # The positions topic holds this agent's positions, committed with the lines.
    positions = read_committed(bootstrap, topics["log-capturer-positions"])
    assert positions and positions[-1].key() == f"{topic_prefix}-agent".encode()
    doc = orjson.loads(positions[-1].value())
    assert {e["offset"] for e in doc["positions"].values()} == {f.stat().st_size for f in files}
    assert not (tmp_path / "positions" / "files.json").exists()  # the local file is not used
    print(json.dumps({"kills_at_lines_read": kills, "per_file": report, "transactions": len(positions)}))


def test_stats_and_metrics_count_the_transactions(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    """``/stats`` and ``/metrics`` show the transactions committed, their records and commit
    time; an abort counted by one run is still counted by the next (it ends the agent)."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    tid = f"{topic_prefix}-stats"
    cfg = eos_config(tmp_path, bootstrap, topics, tid)
    path = write_config(tmp_path / "config.yaml", cfg)
    log = tmp_path / "logs" / "a.log"
    log.write_text("".join(f'{{"seq": {i}}}\n' for i in range(5000)))
    # A previous run aborted twice (its count is kept in positions.directory).
    AbortLog(str(tmp_path / "positions"), tid).save(2, "commit: Broker: Request timed out")
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: caught_up(agent, [log]), 60, "every line read and acknowledged")
        wait_until(
            lambda: agent.get("/stats")["sinks"]["kafka_sink"]["transactions"]["records_open"] == 0,
            30,
            "the last transaction committed",
        )
        t = agent.get("/stats")["sinks"]["kafka_sink"]["transactions"]
        text = agent.metrics()
    finally:
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    assert t["transactional_id"] == tid
    assert t["committed"] >= 1 and t["records_committed"] == 5000, t
    assert t["aborted"] == 2 and t["last_abort"] == "commit: Broker: Request timed out", t
    assert 0 < t["average_commit_seconds"] < 10 and t["average_records"] == round(5000 / t["committed"], 1)
    assert metric(text, "kafka_transactions_total", sink_name="kafka", outcome="committed") == t["committed"]
    assert metric(text, "kafka_transactions_total", sink_name="kafka", outcome="aborted") == 2
    assert metric(text, "kafka_transaction_records_sum", sink_name="kafka") == 5000
    assert metric(text, "kafka_transaction_records_count", sink_name="kafka") == t["committed"]
    commits = metric(text, "kafka_transaction_commit_duration_seconds_count", sink_name="kafka")
    assert commits == t["committed"]
    assert check_exactly_once(read_committed(bootstrap, topics["logs"]), [log], 5000) == {str(log): 5000}


def test_a_second_agent_with_the_same_transactional_id_fences_the_first(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    tid = f"{topic_prefix}-shared"
    one, two = tmp_path / "one", tmp_path / "two"
    paths = []
    for d in (one, two):
        cfg = eos_config(d, bootstrap, topics, tid)
        paths.append(write_config(d / "config.yaml", cfg))
    (one / "logs" / "a.log").write_text("".join(f'{{"n": {i}}}\n' for i in range(100)))
    first = AgentProcess(paths[0], one / "agent.log").start()
    second = None
    try:
        wait_until(lambda: first.get("/stats")["files"]["in_flight_lines"] == 0, 60, "first agent's lines")
        wait_until(lambda: first.get("/stats")["files"]["lines_read"] == 100, 60, "first agent's lines read")
        second = AgentProcess(paths[1], two / "agent.log").start()
        # The first one's next transaction is refused: it ends, saying why.
        with (one / "logs" / "a.log").open("a") as f:
            f.write('{"n": 100}\n')
        assert first.proc is not None
        code = first.proc.wait(60)
        assert code == EXIT_FENCED, first.log()
        assert "give each agent its own sinks.kafka.exactly_once.transactional_id" in first.log()
        assert second.stop(signal.SIGTERM) == 0, second.log()
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the fenced agent did not end:\n{first.log()}") from None
    finally:
        for a in (first, second):
            if a is not None and a.proc is not None and a.proc.poll() is None:
                a.kill()


def write_rotating(path: Path, lines: int, rate: float, rotate_every: int, stop: threading.Event) -> None:
    """``{"seq": n}`` lines appended to ``path`` at ``rate``; every ``rotate_every`` lines the file
    is renamed to ``path.1`` (the older ``.1`` to ``.2``) and a new one begun (logrotate's
    rename)."""
    f = path.open("a")
    n = 0
    batch = max(1, int(rate / 100))
    while n < lines and not stop.is_set():
        end = min(lines, n + batch)
        f.write("".join(f'{{"seq": {i}, "msg": "line {i}"}}\n' for i in range(n, end)))
        f.flush()
        for i in range(n, end):
            if (i + 1) % rotate_every == 0 and i + 1 < lines:
                f.close()
                one = path.with_name(path.name + ".1")
                if one.exists():
                    one.replace(path.with_name(path.name + ".2"))
                path.replace(one)
                f = path.open("a")
                break  # the rest of this batch goes on in the next round
        else:
            n = end
            time.sleep(0.01)
            continue
        n = i + 1
        time.sleep(0.01)
    f.close()


def test_rotation_and_sigkill_then_read_committed_sees_every_line_once_in_order(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    lines = 40_000
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = eos_config(tmp_path, bootstrap, topics, f"{topic_prefix}-rot")
    cfg["files_config"]["include_patterns"] = ["app.log"]
    path = write_config(tmp_path / "config.yaml", cfg)
    log = tmp_path / "logs" / "app.log"
    stop = threading.Event()
    writer = threading.Thread(target=write_rotating, args=(log, lines, 4000, 7_000, stop), daemon=True)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    writer.start()
    rnd = random.Random(7)
    try:
        for _ in range(KILLS):
            time.sleep(1.5 + rnd.uniform(0, 2.5))
            agent.kill()
            agent = AgentProcess(path, tmp_path / "agent.log").start()
        writer.join(60)
        assert not writer.is_alive()
        wait_until(lambda: caught_up(agent, [log]), 120, "every line read and acknowledged")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        stop.set()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    records = read_committed(bootstrap, topics["logs"])
    # A rotated file's lines are attributed to the path they were written at: one file, in order.
    report = check_exactly_once(records, [log], lines)
    print(json.dumps({"per_file": report, "rotations": lines // 7_000}))


def write_copytruncating(
    path: Path, lines: int, rate: float, rotate_every: int, stop: threading.Event, rotated: threading.Event
) -> None:
    """``{"seq": n}`` lines appended to ``path`` at ``rate``; every ``rotate_every`` lines the file
    is copied to ``path.1`` (older copies shifted to ``.2``, ``.3``..., none deleted) and truncated
    in place (logrotate's ``copytruncate``), with no write in between (logrotate's own race, lines
    written between its copy and its truncation, is not the agent's to fix). ``rotated`` is set
    after each truncation."""
    f = path.open("a")
    n = 0
    batch = max(1, int(rate / 100))
    while n < lines and not stop.is_set():
        end = min(lines, n + batch)
        if n // rotate_every != end // rotate_every:
            end = (end // rotate_every) * rotate_every
        f.write("".join(f'{{"seq": {i}, "msg": "line {i}"}}\n' for i in range(n, end)))
        f.flush()
        n = end
        if n % rotate_every == 0 and n < lines:
            copies = sorted((int(p.name.rsplit(".", 1)[1]), p) for p in path.parent.glob(path.name + ".*"))
            for k, old in reversed(copies):
                old.rename(path.with_name(f"{path.name}.{k + 1}"))
            shutil.copyfile(path, path.with_name(path.name + ".1"))
            os.truncate(path, 0)
            rotated.set()
        time.sleep(0.01)
    f.close()


def test_copytruncate_and_sigkill_then_read_committed_sees_every_line_once_in_order(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    lines = 84_000  # 11 copytruncates, one every 1.75 s
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = eos_config(tmp_path, bootstrap, topics, f"{topic_prefix}-copytrunc")
    cfg["files_config"]["include_patterns"] = ["app.log"]
    path = write_config(tmp_path / "config.yaml", cfg)
    log = tmp_path / "logs" / "app.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    stop, rotated = threading.Event(), threading.Event()
    writer = threading.Thread(
        target=write_copytruncating, args=(log, lines, 4000, 7_000, stop, rotated), daemon=True
    )
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    writer.start()
    rnd = random.Random(11)
    kills = []
    try:
        for _ in range(KILLS):
            # Within moments of a copytruncate: the copy half read, or not found yet, and the
            # older copies renamed again since the agent last looked at their names.
            time.sleep(rnd.uniform(0.5, 2))
            rotated.clear()
            assert rotated.wait(10), "the writer ended before the kills"
            time.sleep(rnd.uniform(0, 0.3))
            kills.append(agent.get("/stats")["files"]["lines_read"])
            agent.kill()
            agent = AgentProcess(path, tmp_path / "agent.log").start()
        writer.join(60)
        assert not writer.is_alive()
        wait_until(lambda: caught_up(agent, [log]), 120, "every line read and acknowledged")
        # The copies are read to their end too (the last one may still drain).
        wait_until(
            lambda: agent.get("/stats")["files"]["in_flight_lines"] == 0, 60, "every copy acknowledged"
        )
        time.sleep(1)  # one more transaction interval: the last commit
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        stop.set()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    assert len(list(log.parent.glob("app.log.*"))) == lines // 7_000 - 1
    records = read_committed(bootstrap, topics["logs"])
    # The copies' lines are attributed to the path they were written at: one file, in order.
    report = check_exactly_once(records, [log], lines)
    assert "reading it again from the start" not in (tmp_path / "agent.log").read_text()
    print(json.dumps({"per_file": report, "copytruncates": lines // 7_000 - 1, "kills_at_lines_read": kills}))


def test_many_small_files_commit_without_waiting_for_the_sinks_timeout(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """40 files of a few lines each found at start-up: a batch of 40 small chunks. Each goes
    alone through the transaction's gate (a commit waits for every admitted record, so none may
    be admitted and held back), so transactions commit at once: nothing aborts for
    sinks.kafka.timeout."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = eos_config(tmp_path, bootstrap, topics, f"{topic_prefix}-agent")
    cfg["sinks"]["kafka"]["timeout"] = "10s"
    cfg["sinks"]["kafka"]["exactly_once"]["transaction_interval"] = "50ms"
    path = write_config(tmp_path / "config.yaml", cfg)
    files = [tmp_path / "logs" / f"svc-{i}.log" for i in range(40)]
    for f in files:
        f.write_text("".join(f'{{"seq": {n}}}\n' for n in range(3)))
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: caught_up(agent, files), 30, "every line read and acknowledged")
        text = agent.metrics()
        assert metric(text, "kafka_transactions_total", sink_name="kafka", outcome="aborted") == 0, (
            agent.log()
        )
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    assert check_exactly_once(read_committed(bootstrap, topics["logs"]), files, 3) == {
        str(f): 3 for f in files
    }
