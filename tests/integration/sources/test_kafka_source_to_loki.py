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
from tests.integration.sources.test_kafka_source import committed, end_offsets, make_topic, produce
from tests.support import REPO, AgentProcess, free_port, wait_until, write_config

pytestmark = pytest.mark.integration


def test_the_example_consumer_config_delivers_every_record_across_an_outage(
    victorialogs: LocalVictoriaLogs, tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topic, group, run = f"{topic_prefix}-logs", f"{topic_prefix}-g", uuid.uuid4().hex[:12]
    make_topic(bootstrap, topic)
    n = 10_000
    cfg = yaml.safe_load((REPO / "configs" / "consumer-loki.yaml").read_text())
    cfg["server"] = {"host": "127.0.0.1", "port": free_port()}
    cfg["metrics"] = {"host": "127.0.0.1", "port": free_port()}
    cfg["dispatcher"]["dlq_config"]["directory"] = str(tmp_path / "dlq")
    cfg["positions"]["directory"] = str(tmp_path / "positions")
    cfg["kafka"].update(brokers=bootstrap.split(","), group_id=group, topics=[topic], commit_interval="200ms")
    cfg["sinks"]["loki"].update(url=victorialogs.url, default_labels={"run": run}, batch_timeout="50ms")
    config = write_config(tmp_path / "config.yaml", cfg)

    def seqs() -> Counter[int]:
        rows = victorialogs.query(f'{{run="{run}"}}')
        return Counter(int(str(r.get("message") or r.get("_msg")).rsplit("=", 1)[1]) for r in rows)

    produce(bootstrap, topic, n // 2)
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: sum(seqs().values()) >= n // 4, 120, "records in VictoriaLogs")
        victorialogs.stop()
        try:
            produce(bootstrap, topic, n // 2, start=n // 2)
            time.sleep(5)
            before = committed(bootstrap, group, topic)
            time.sleep(2)
            # The store away: the offsets hold still.
            assert committed(bootstrap, group, topic) == before
        finally:
            victorialogs.up(timeout=60)
        wait_until(lambda: set(seqs()) == set(range(n)), 180, "every record after the outage")
        ends = end_offsets(bootstrap, topic)
        wait_until(lambda: committed(bootstrap, group, topic) == ends, 60, "the offsets at the end")
    finally:
        assert agent.stop() == 0, agent.log_path.read_text()[-3000:]
    got = seqs()
    print(f"kafka -> victorialogs across an outage: {n} records, {sum(got.values()) - n} written twice")
    assert set(got) == set(range(n))
