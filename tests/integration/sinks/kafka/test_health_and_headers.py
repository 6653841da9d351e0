"""Connection state in metrics and /health follows the broker; optional Kafka headers."""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from log_capturer.devtools.kafka_local import LocalKafka, LocalKafkaError, free_port
from tests.integration.sinks.kafka.util import ship_lines
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    started,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker this test may stop and start."""
    cluster = LocalKafka(
        tmp_path_factory.mktemp("own-kafka"), port=free_port(), controller_ports=[free_port()], log=print
    )
    started(cluster, "the Kafka broker", LocalKafkaError, timeout=120)
    yield cluster
    cluster.down()


def connection_status(metrics: str) -> list[float]:
    return [
        float(v)
        for v in re.findall(
            r'^kafka_connection_status\{broker="[^"]+",sink_name="kafka"\} (\S+)$', metrics, re.M
        )
    ]


def sink_breaker(agent: AgentProcess) -> dict[str, Any]:
    breaker: dict[str, Any] = agent.get("/health")["services"]["sinks"][0]["circuit_breaker"]
    return breaker


def test_health_and_connection_status_follow_the_broker_and_lines_survive_the_outage(
    tmp_path: Path, own_kafka: LocalKafka, topic_prefix: str
) -> None:
    state = own_kafka.load_state()
    assert state is not None
    bootstrap = state.bootstrap
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    # The breaker opens within the outage (2 seconds without a reachable broker while records
    # wait) and the lines after it are all one chunk: health must still recover once the broker
    # is back, with no further traffic to serve as trial calls. The records wait in the producer
    # for the whole outage (timeout 120s; a restart of the broker can take longer than 10 s on a
    # slow machine, and a record not delivered within `timeout` is parked in the local DLQ, to be
    # replayed only after dlq reprocessing's interval).
    breaker = {"failure_threshold": 2, "timeout": "2s"}
    cfg = agent_config(
        tmp_path, bootstrap, topics, sinks={"kafka": {"timeout": "120s", "circuit_breaker": breaker}}
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    log = tmp_path / "logs" / "app.log"
    log.write_text("".join(f"ERROR before {i}\n" for i in range(100)))
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        consume_all(bootstrap, topics.values(), expected=100, timeout=60)
        wait_until(lambda: connection_status(agent.metrics()) == [1.0], 30, "connection status 1")
        assert agent.get("/health")["status"] == "healthy"

        own_kafka.stop_node(1)
        wait_until(
            lambda: agent.get("/health")["services"]["sinks"][0]["status"] == "unhealthy",
            30,
            "health to report the broker down",
        )
        wait_until(lambda: connection_status(agent.metrics()) == [0.0], 30, "connection status 0")
        with log.open("a") as f:  # written while the broker is down: must wait, then arrive
            f.write("".join(f"ERROR during {i}\n" for i in range(100)))
        wait_until(lambda: sink_breaker(agent)["times_opened"] >= 1, 30, "the circuit breaker to open")

        own_kafka.start_node(1)
        wait_until(lambda: connection_status(agent.metrics()) == [1.0], 60, "connection status back to 1")
        records = consume_all(bootstrap, topics.values(), expected=200, timeout=90)
        wait_until(
            lambda: agent.get("/health")["services"]["sinks"][0]["status"] == "healthy",
            60,
            "health to recover",
        )
        assert sink_breaker(agent)["state"] == "closed"
        sink = agent.get("/stats")["sinks"]["kafka_sink"]
        assert sink["parked"] == 0, sink  # every line waited and was delivered; none parked
        messages = sorted(r.json()["message"] for r in records)
        assert messages == sorted(
            [f"ERROR before {i}" for i in range(100)] + [f"ERROR during {i}" for i in range(100)]
        )
        assert agent.stop(signal.SIGTERM) == 0
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()


def test_optional_headers(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    from confluent_kafka import Consumer, TopicPartition

    topics = create_prefixed_topics(bootstrap, topic_prefix)
    records, _ = ship_lines(
        tmp_path,
        bootstrap,
        topics,
        ["ERROR with headers", "plain without level"],
        sinks={"kafka": {"headers": ["level", "source_type", "host"]}},
    )
    assert len(records) == 2
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": topic_prefix, "auto.offset.reset": "earliest"}
    )
    try:
        got = {}
        for name in ("logs-high-priority", "logs"):
            t = topics[name]
            parts = consumer.list_topics(t, timeout=10).topics[t].partitions
            consumer.assign([TopicPartition(t, p, 0) for p in parts])
            msgs = wait_until(lambda: consumer.consume(10, 1.0), 30, f"a record in {t}")
            got[name] = dict(msgs[0].headers())
    finally:
        consumer.close()
    host = socket.gethostname().encode()
    assert got["logs-high-priority"] == {"level": b"error", "source_type": b"file", "host": host}
    assert got["logs"] == {"level": b"", "source_type": b"file", "host": host}


def test_headers_are_off_by_default(tmp_path: Path, bootstrap: str, topic_prefix: str) -> None:
    from confluent_kafka import Consumer, TopicPartition

    topics = create_prefixed_topics(bootstrap, topic_prefix)
    ship_lines(tmp_path, bootstrap, topics, ["ERROR no headers"])
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": topic_prefix, "auto.offset.reset": "earliest"}
    )
    try:
        t = topics["logs-high-priority"]
        parts = consumer.list_topics(t, timeout=10).topics[t].partitions
        consumer.assign([TopicPartition(t, p, 0) for p in parts])
        msgs = wait_until(lambda: consumer.consume(10, 1.0), 30, "the record")
        assert msgs[0].headers() is None
    finally:
        consumer.close()
