"""Partitioning strategies against the real broker; hash placement checked against Java's murmur2."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import orjson
import pytest

from log_capturer.devtools.kafka_local import ensure_jars
from log_capturer.sinks.kafka.partitioning import java_partition
from tests.integration.sinks.kafka.util import dlq_entries, ship_lines
from tests.support import AgentProcess, create_prefixed_topics, wait_until

pytestmark = pytest.mark.integration

JAVA_PARTITIONS = """
import org.apache.kafka.common.utils.Utils;
import java.nio.charset.StandardCharsets;
public class Partitions {
    public static void main(String[] args) {
        int n = Integer.parseInt(args[0]);
        for (int i = 1; i < args.length; i++) {
            byte[] key = args[i].getBytes(StandardCharsets.UTF_8);
            System.out.println(args[i] + " " + Utils.toPositive(Utils.murmur2(key)) % n);
        }
    }
}
"""


def java_partitions(tmp: Path, keys: list[str], n: int) -> dict[str, int]:
    """Where the Java client (kafka-clients' own murmur2) puts each key."""
    libs = ensure_jars()
    src = tmp / "Partitions.java"
    src.write_text(JAVA_PARTITIONS)
    subprocess.run(["javac", "-cp", f"{libs}/*", "-d", str(tmp), str(src)], check=True, timeout=120)
    out = subprocess.run(
        ["java", "-cp", f"{tmp}:{libs}/*", "Partitions", str(n), *keys],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return {k: int(p) for k, p in (line.rsplit(" ", 1) for line in out.splitlines())}


def test_hash_places_each_key_where_the_java_client_would(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    tenants = [f"tenant-{i}" for i in range(40)] + ["21", "foobar", "ключ", "a-little-bit-long-string"]
    lines = [
        orjson.dumps({"level": "error", "tenant_id": tenants[i % len(tenants)], "i": i}).decode()
        for i in range(2000)
    ]
    records, _ = ship_lines(
        tmp_path,
        bootstrap,
        topics,
        lines,
        sinks={"kafka": {"partitioning": {"strategy": "hash", "key_field": "tenant_id"}}},
    )
    java = java_partitions(tmp_path, tenants, 6)  # logs-high-priority has 6 partitions
    placed: dict[str, set[int]] = {}
    for r in records:
        assert r.topic == topics["logs-high-priority"]
        key = r.key.decode() if r.key else ""
        placed.setdefault(key, set()).add(r.partition)
    assert set(placed) == set(tenants)
    for key, parts in placed.items():
        assert parts == {java[key]} == {java_partition(key.encode(), 6)}, key


def test_round_robin_spreads_records_evenly(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines = [f"ERROR same source {i}" for i in range(3000)]
    records, _ = ship_lines(
        tmp_path, bootstrap, topics, lines, sinks={"kafka": {"partitioning": {"strategy": "round-robin"}}}
    )
    counts = Counter(r.partition for r in records)
    assert sorted(counts) == list(range(6))
    assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_random_uses_every_partition_and_keeps_the_key(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines = [f"ERROR one key {i}" for i in range(3000)]
    records, _ = ship_lines(
        tmp_path, bootstrap, topics, lines, sinks={"kafka": {"partitioning": {"strategy": "random"}}}
    )
    assert len({r.partition for r in records}) == 6
    assert {r.key for r in records} == {str(tmp_path / "logs" / "app.log").encode()}


def test_partitioning_off_sends_records_without_a_key(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """``partitioning.enabled: false``: no key, even where the line has a ``tenant_id``; librdkafka
    spreads keyless records over the partitions (record by record here: its sticky partitioner,
    which keeps a burst of keyless records on one partition for 10 ms, is turned off, so that the
    spread shows that no partition was chosen for them)."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines = [
        orjson.dumps({"level": "error", "tenant_id": f"tenant-{i % 7}", "i": i}).decode() for i in range(3000)
    ]
    records, _ = ship_lines(
        tmp_path,
        bootstrap,
        topics,
        lines,
        sinks={
            "kafka": {
                "partitioning": {"enabled": False},
                "librdkafka_options": {"sticky.partitioning.linger.ms": 0},
            }
        },
    )
    assert sorted(r.json()["message"] for r in records) == sorted(lines)
    assert {r.key for r in records} == {None}
    assert len({r.partition for r in records}) == 6, Counter(r.partition for r in records)


def test_manual_partition_from_a_field_and_bad_values_go_to_the_dlq(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    good = [f"level=error part={i % 6} msg=ok-{i}" for i in range(600)]
    bad = [
        "level=error part=9 msg=out-of-range",
        "level=error part=x msg=not-a-number",
        "level=error msg=no-partition",
    ]
    seen: dict[str, object] = {}

    def check(agent: AgentProcess) -> None:
        wait_until(
            lambda: agent.get("/stats")["sinks"]["kafka_sink"]["parked"] == len(bad),
            30,
            "the bad records to be parked",
        )
        seen["metrics"] = agent.metrics()
        seen["health"] = agent.get("/health")["services"]["sinks"][0]["status"]

    records, _ = ship_lines(
        tmp_path,
        bootstrap,
        topics,
        good + bad,
        expected=len(good),
        while_running=check,
        sinks={"kafka": {"partitioning": {"strategy": "manual", "key_field": "part"}}},
    )
    assert len(records) == len(good)
    for r in records:
        assert r.partition == int(r.json()["message"].split("part=")[1].split()[0])
    entries = dlq_entries(tmp_path / "dlq")
    assert sorted(e["original_entry"]["message"] for e in entries) == sorted(bad)
    assert {e["error_type"] for e in entries} == {"invalid_partition"}
    assert any("does not exist in topic" in e["error_message"] for e in entries)
    assert seen["health"] == "healthy"
    assert 'reason="invalid_partition"' in str(seen["metrics"])
