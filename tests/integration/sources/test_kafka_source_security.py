"""The Kafka source through SASL over TLS (the Kafka sink's `auth` and `tls` blocks), against the
second, secured broker of the Kafka sink's security tests (`log-capturer kafka up --sasl --tls`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from log_capturer.devtools.kafka_local import SASL_USER, LocalKafka
from tests.integration.sinks.kafka.conftest import secure_cluster, secure_kafka
from tests.integration.sources.test_kafka_source import (
    PARTITIONS,
    committed,
    consumer_config,
    end_offsets,
    make_topic,
    produce,
    seqs,
)
from tests.support import AgentProcess, wait_until, write_config

pytestmark = pytest.mark.integration

# The secured broker's module fixtures, used here as in the Kafka sink's security tests.
__all__ = ["secure_cluster", "secure_kafka"]


def test_sasl_scram_over_tls(tmp_path: Path, secure_kafka: LocalKafka, topic_prefix: str) -> None:
    state = secure_kafka.load_state()
    assert state is not None
    plain = state.bootstrap
    topic, group = f"{topic_prefix}-logs", f"{topic_prefix}-g"
    make_topic(plain, topic)
    n = 500
    produce(plain, topic, n)
    config = consumer_config(tmp_path, plain, topic, group)
    data = yaml.safe_load(config.read_text())
    user, password = SASL_USER
    data["kafka"].update(
        brokers=state.bootstrap_for("SASL_SSL").split(","),
        auth={"enabled": True, "mechanism": "SCRAM-SHA-256", "username": user, "password": password},
        tls={"enabled": True, "ca_file": str(secure_kafka.tls_material.ca_file)},
    )
    write_config(config, data)
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        wait_until(lambda: sum(seqs(tmp_path / "out").values()) >= n, 90, "every record over SASL_SSL")
        ends = end_offsets(plain, topic)
        wait_until(lambda: committed(plain, group, topic, PARTITIONS) == ends, 60, "the offsets at the end")
    finally:
        assert agent.stop() == 0
    assert seqs(tmp_path / "out") == Counter(range(n))
    assert password not in agent.log_path.read_text(), "the SASL password leaked into the agent's log"
