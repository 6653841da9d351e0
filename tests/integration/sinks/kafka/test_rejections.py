"""Oversize and broker-rejected records are parked with their reason; a fatal error recreates the producer."""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from tests.integration.sinks.kafka.util import dlq_entries, ship_lines
from tests.support import AgentProcess, create_prefixed_topics, wait_until

pytestmark = pytest.mark.integration


def limit_topic(bootstrap: str, topic: str, max_bytes: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entry = ConfigEntry("max.message.bytes", str(max_bytes), incremental_operation=AlterConfigOpType.SET)
    res = ConfigResource("topic", topic, incremental_configs=[entry])
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(30)


def test_a_line_larger_than_max_message_bytes_is_parked_and_counted(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    big = "ERROR " + "x" * 5000
    lines = [f"INFO small {i}" for i in range(200)] + [big] + [f"INFO after {i}" for i in range(200)]
    seen: dict[str, Any] = {}

    def check(agent: AgentProcess) -> None:
        wait_until(lambda: agent.get("/stats")["sinks"]["kafka_sink"]["parked"] == 1, 30, "the parked record")
        seen["metrics"] = agent.metrics()

    records, _ = ship_lines(
        tmp_path,
        bootstrap,
        topics,
        lines,
        expected=400,
        while_running=check,
        sinks={"kafka": {"max_message_bytes": 4096}},
    )
    assert sorted(r.json()["message"] for r in records) == sorted(lines[:200] + lines[201:])
    [entry] = dlq_entries(tmp_path / "dlq")
    assert entry["original_entry"]["message"] == big
    assert entry["error_type"] == "message_too_large"
    assert "exceeds max_message_bytes=4096" in entry["error_message"]
    assert entry["topic"] == topics["logs-high-priority"]
    for field in (
        "entry_id",
        "timestamp",
        "failed_sink",
        "retry_count",
        "reprocess_attempts",
        "next_reprocess_time",
    ):
        assert field in entry
    assert 'kafka_dlq_messages_total{reason="message_too_large"' in seen["metrics"]


@pytest.mark.parametrize(
    "case",
    ["dlq-topic", "dlq-topic-refuses-too", "send-on-error-off", "dlq-topic-off", "fatal-then-recreated"],
)
def test_a_record_the_broker_rejects_goes_to_the_dlq_and_its_batch_mates_still_arrive(
    case: str, tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """dlq-topic (the defaults): the rejected record goes to the DLQ topic with the error in its
    headers. It goes to the local DLQ store instead when the DLQ topic refuses it too, or with
    ``dlq_config.send_on_error: false`` or ``dlq_config.enabled: false`` (no DLQ topic at all)."""
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    limit_topic(bootstrap, topics["logs"], 2000)  # the broker refuses larger batches on this topic
    if case == "dlq-topic-refuses-too":
        limit_topic(bootstrap, topics["logs-dlq"], 2000)
    # Random text: it stays larger than the topic limit after compression.
    big = "no level, too large for the topic " + "".join(
        random.Random(7).choices(string.ascii_letters, k=8000)
    )
    lines = [f"no level line {i}" for i in range(300)] + [big] + [f"no level line b{i}" for i in range(300)]
    kafka: dict[str, Any] = {"batch_timeout": "200ms"}
    if case == "fatal-then-recreated":
        # A permanent batch failure then is a fatal producer error: the producer must be replaced.
        kafka["librdkafka_options"] = {"enable.gapless.guarantee": True}
    elif case == "send-on-error-off":
        kafka["dlq_config"] = {"send_on_error": False}
    elif case == "dlq-topic-off":
        kafka["dlq_config"] = {"enabled": False}
    seen: dict[str, Any] = {}

    def dead(agent: AgentProcess) -> int:
        s = agent.get("/stats")["sinks"]["kafka_sink"]
        return int(s["parked"]) + int(s["sent_to_dlq_topic"])

    def check(agent: AgentProcess) -> None:
        wait_until(lambda: dead(agent) >= 1, 60, "the rejected record in the DLQ")
        seen["stats"] = agent.get("/stats")["sinks"]["kafka_sink"]
        seen["health"] = agent.get("/health")["services"]["sinks"][0]
        seen["metrics"] = agent.metrics()

    to_topic = case in ("dlq-topic", "fatal-then-recreated")
    records, agent = ship_lines(
        tmp_path,
        bootstrap,
        topics,
        lines,
        expected=601 if to_topic else 600,
        while_running=check,
        sinks={"kafka": kafka},
    )
    shipped = sorted(r.json()["message"] for r in records if r.topic != topics["logs-dlq"])
    assert shipped == sorted(line for line in lines if line != big)
    in_topic = [r for r in records if r.topic == topics["logs-dlq"]]
    local = dlq_entries(tmp_path / "dlq")
    if to_topic:
        assert [r.json()["message"] for r in in_topic] == [big]
        headers = dict(in_topic[0].headers)
        assert headers["dlq_error_type"] == b"send_error", headers
        assert headers["dlq_original_topic"] == topics["logs"].encode()
        assert b"msg_size_too_large" in headers["dlq_error_message"], headers
        assert headers["dlq_failed_sink"] == b"kafka_sink"
        assert local == []
        assert seen["stats"]["sent_to_dlq_topic"] == 1, seen
    else:
        assert in_topic == []
        assert [e["original_entry"]["message"] for e in local] == [big]
        assert local[0]["error_type"] == "send_error"
        assert "msg_size_too_large" in local[0]["error_message"], local[0]
        if case == "dlq-topic-refuses-too":
            assert f"the DLQ topic {topics['logs-dlq']} failed too" in local[0]["error_message"]
        else:
            assert seen["stats"]["sent_to_dlq_topic"] == 0, seen
        assert local[0]["topic"] == topics["logs"]
    assert 'kafka_dlq_messages_total{reason="send_error"' in seen["metrics"]
    if case == "fatal-then-recreated":
        assert seen["stats"]["producer_recreated"] >= 1, seen
        assert "recreating it" in agent.log(tail=100000)
    assert seen["health"]["status"] == "healthy", seen
