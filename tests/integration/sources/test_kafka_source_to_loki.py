"""configs/consumer-loki.yaml, pointed at the test session's Kafka and VictoriaLogs (its Loki
push API): every record arrives, also across an outage of the store, and the offsets reach the
end. VictoriaLogs does not deduplicate, so what was read twice is counted."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml

from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs
from tests.integration.sources.test_kafka_source import (
    committed,
    end_offsets,
    make_topic,
    produce,
    source_health,
)
from tests.support import REPO, AgentProcess, free_port, wait_until, write_config

pytestmark = pytest.mark.integration


def test_the_example_consumer_config_delivers_every_record_across_an_outage(
    victorialogs: LocalVictoriaLogs, tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """The store away for 30 s while records keep arriving: the lag grows, the partitions pause,
    the source is degraded and nothing is committed; the store back, the lag drains to 0 and
    every record is in the store."""
    topic, group, run = f"{topic_prefix}-logs", f"{topic_prefix}-g", uuid.uuid4().hex[:12]
    make_topic(bootstrap, topic)
    n = 10_000
    cfg = yaml.safe_load((REPO / "configs" / "consumer-loki.yaml").read_text())
    cfg["server"] = {"host": "127.0.0.1", "port": free_port()}
    cfg["metrics"] = {"host": "127.0.0.1", "port": free_port()}
    cfg["dispatcher"]["dlq_config"]["directory"] = str(tmp_path / "dlq")
    cfg["positions"]["directory"] = str(tmp_path / "positions")
    cfg["kafka"].update(
        brokers=bootstrap.split(","),
        group_id=group,
        topics=[topic],
        commit_interval="200ms",
        # Small enough for this test's records to fill: the partitions pause, the lag shows.
        max_in_flight=2000,
        lag_threshold=1000,
    )
    # The outage (30 s) is held by the paused partitions, not by parking in the DLQ after timeout;
    # the breaker probes the store every 5 s (not the default minute), to keep the test short.
    cfg["sinks"]["loki"].update(
        url=victorialogs.url,
        default_labels={"run": run},
        batch_timeout="50ms",
        timeout="3m",
        circuit_breaker={"timeout": "5s"},
    )
    config = write_config(tmp_path / "config.yaml", cfg)

    def seqs() -> Counter[int]:
        rows = victorialogs.query(f'{{run="{run}"}}')
        return Counter(int(str(r.get("message") or r.get("_msg")).rsplit("=", 1)[1]) for r in rows)

    def gauges(name: str) -> list[float]:
        prefix = f"{name}{{"
        lines = [x for x in agent.metrics().splitlines() if x.startswith(prefix) or x.startswith(f"{name} ")]
        return [float(x.rsplit(" ", 1)[1]) for x in lines]

    produce(bootstrap, topic, n // 2)
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: sum(seqs().values()) >= n // 4, 120, "records in VictoriaLogs")
        victorialogs.stop()
        down = time.monotonic()
        try:
            produce(bootstrap, topic, n // 4, start=n // 2)
            wait_until(lambda: gauges("kafka_source_paused") == [1.0], 30, "the partitions paused")
            wait_until(lambda: source_health(agent)["status"] == "degraded", 30, "the source degraded")
            health = source_health(agent)
            assert "kafka.lag_threshold" in health["message"], health
            assert agent.get("/health")["status"] != "healthy"
            before = committed(bootstrap, group, topic)
            lag_before = sum(gauges("kafka_source_lag"))
            produce(bootstrap, topic, n // 4, start=3 * n // 4)
            # The records keep arriving while the partitions are paused: the lag grows with them.
            wait_until(lambda: sum(gauges("kafka_source_lag")) > lag_before, 30, "the lag to grow")
            time.sleep(max(0.0, 30 - (time.monotonic() - down)))
            # The store away: the offsets held still, the partitions stayed paused.
            assert committed(bootstrap, group, topic) == before
            assert gauges("kafka_source_paused") == [1.0]
            lag_down = sum(gauges("kafka_source_lag"))
            assert lag_down >= n // 4, lag_down
        finally:
            victorialogs.up(timeout=60)
        wait_until(lambda: set(seqs()) == set(range(n)), 180, "every record after the outage")
        ends = end_offsets(bootstrap, topic)
        wait_until(lambda: committed(bootstrap, group, topic) == ends, 60, "the offsets at the end")
        wait_until(lambda: gauges("kafka_source_lag") == [0.0] * 3, 30, "the lag drained to 0")
        assert gauges("kafka_source_paused") == [0.0]
        wait_until(lambda: source_health(agent)["status"] == "healthy", 30, "the source healthy again")
    finally:
        assert agent.stop() == 0, agent.log_path.read_text()[-3000:]
    got = seqs()
    print(
        f"kafka -> victorialogs across a 30 s outage: {n} records, {sum(got.values()) - n} written "
        f"twice, lag {lag_before:.0f} -> {lag_down:.0f} during the outage"
    )
    assert set(got) == set(range(n))
    assert not list((tmp_path / "dlq").glob("dlq_entry_*.json")), "held by the pause, nothing parked"
