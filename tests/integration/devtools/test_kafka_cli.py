"""`log-capturer kafka up | status | create-topics | down` against a real broker of its own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.topics import DAY_MS, TOPICS
from tests.support import run_cli

pytestmark = pytest.mark.integration


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, check=check, timeout=180)


def test_up_is_idempotent_topics_are_created_once_and_down_stops(tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    work = str(tmp_path / "cluster")
    port = free_port()
    try:
        first = cli("kafka", "up", "--workdir", work, "--port", str(port)).stdout.strip()
        assert first == f"127.0.0.1:{port}"
        assert cli("kafka", "up", "--workdir", work, "--port", str(port)).stdout.strip() == first
        status = json.loads(cli("kafka", "status", "--workdir", work).stdout)
        assert status["state"] == "up" and status["bootstrap"] == first

        out1 = cli("kafka", "create-topics", "--workdir", work).stdout
        out2 = cli("kafka", "create-topics", "--bootstrap", first).stdout
        assert out1.count("created") == len(TOPICS) and out2.count("exists") == len(TOPICS)

        admin = AdminClient({"bootstrap.servers": first})
        md = admin.list_topics(timeout=30)
        for spec in TOPICS:
            assert len(md.topics[spec.name].partitions) == spec.partitions
        futures = admin.describe_configs([ConfigResource("topic", t.name) for t in TOPICS])
        for res, fut in futures.items():
            spec = next(t for t in TOPICS if t.name == res.name)
            if spec.compact:  # the positions topic (exactly_once)
                assert fut.result()["cleanup.policy"].value == "compact"
            else:
                assert fut.result()["retention.ms"].value == str(spec.retention_days * DAY_MS)
        broker_cfg = admin.describe_configs([ConfigResource("broker", "1")])
        cfg = next(iter(broker_cfg.values())).result()
        assert cfg["auto.create.topics.enable"].value == "false"
    finally:
        down = cli("kafka", "down", "--workdir", work, check=False)
    assert down.stdout.strip() == "stopped"
    after = cli("kafka", "status", "--workdir", work, check=False)
    assert after.returncode == 1 and json.loads(after.stdout)["state"] == "down"
    # Restarts on the same data, with the topics still there.
    try:
        cli("kafka", "up", "--workdir", work, "--port", str(port))
        admin = AdminClient({"bootstrap.servers": first})
        assert {t.name for t in TOPICS} <= set(admin.list_topics(timeout=30).topics)
    finally:
        cli("kafka", "down", "--workdir", work, "--purge", check=False)
    assert not Path(work).exists()
