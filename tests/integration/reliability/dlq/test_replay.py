"""One replay for the agent and the CLI: the same headers, the same error texts, no exception
escaping from ``produce`` (the CLI once dropped the headers and crashed on a KafkaException)."""

from __future__ import annotations

import socket

import orjson
import pytest

from log_capturer.config.schema import KafkaSinkConfig
from log_capturer.devtools.topics import TopicSpec, create_topics
from log_capturer.observability.metrics import Metrics
from log_capturer.reliability.dlq.replay import ProducerTarget, ReplayRecord
from log_capturer.sinks.kafka.sink import KafkaSink
from tests.support import consume_all

pytestmark = pytest.mark.integration


def records(topic: str, tag: str) -> list[ReplayRecord]:
    doc = {"message": f"parked {tag}", "level": "error", "source_type": "file", "source_id": "/a.log"}
    return [
        ReplayRecord(f"{tag}-ok", topic, "tenant-a", orjson.dumps(doc)),
        # Within max_message_bytes, but its 2,000-byte key takes the message past what the producer
        # takes: produce() itself raises (KafkaException, MSG_SIZE_TOO_LARGE).
        ReplayRecord(f"{tag}-big", topic, "k" * 2000, orjson.dumps({**doc, "message": "x" * 3900})),
    ]


def test_the_cli_and_the_agent_replay_alike(bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}-replayed"
    create_topics(bootstrap, topics=(TopicSpec(topic, 1, 1, "test"),))
    cfg = KafkaSinkConfig.model_validate(
        {
            "brokers": [bootstrap],
            "topic": topic,
            "max_message_bytes": 4096,
            "headers": ["level", "source_id", "host"],
            "native_producer": False,
        }
    )
    target = ProducerTarget(cfg)
    try:
        by_cli = target.replay(records(topic, "cli"), 30)
    finally:
        target.close()
    sink = KafkaSink(cfg, Metrics(), None)
    sink.start()
    try:
        by_agent = sink.replay(records(topic, "agent"), 30)
    finally:
        sink.stop(10)
    assert by_cli["cli-ok"] is None and by_agent["agent-ok"] is None
    assert by_cli["cli-big"] == by_agent["agent-big"]
    assert str(by_cli["cli-big"]).startswith("could not be produced: msg_size_too_large: "), by_cli
    got = consume_all(bootstrap, [topic], expected=2)
    assert sorted(orjson.loads(r.value)["message"] for r in got) == ["parked agent", "parked cli"]
    want = (("level", b"error"), ("source_id", b"/a.log"), ("host", socket.gethostname().encode()))
    assert all(r.headers == want for r in got), [r.headers for r in got]
