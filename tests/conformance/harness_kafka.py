"""The Kafka sink's harness: the session's real broker (``kafka`` in tests/conftest.py).

Each test gets its own topics (the destination, 4 partitions, and the DLQ topic); level routing is
off so every record goes to the destination. Faults are the broker's own: it is stopped (SIGTERM)
and started again, paused (SIGSTOP, then SIGCONT), and a topic's ``max.message.bytes`` refuses
records larger than it. The broker is always running again after a test (:func:`open_harness`).
"""

from __future__ import annotations

import os
import random
import signal
import string
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from log_capturer.devtools.kafka_local import LocalKafka
from tests.conformance.harness import DeadLetter, Order, Received, poll_received
from tests.support import Rec, _merge, consume_all, create_prefixed_topics, wait_until

#: The destination topic refuses batches larger than this once refuse() was called...
TOPIC_LIMIT = 2000
#: ...and refused_line() is larger (random letters: still larger after compression).
REFUSED_SIZE = 8000
NODE = 1
#: Marks the harness's own probes of the topic limit (not the sink's records).
PROBE_HEADER = "conformance-probe"


class KafkaHarness:
    name = "kafka"
    section = "kafka"
    #: One origin's records have one key (its source_id), so one partition, in order.
    order: Order = "per_origin"
    refused_reason = "send_error"
    refused_text = "MSG_SIZE_TOO_LARGE"

    def __init__(self, cluster: LocalKafka, prefix: str) -> None:
        self.cluster = cluster
        state = cluster.load_state()
        assert state is not None
        self.bootstrap = state.bootstrap
        topics = create_prefixed_topics(self.bootstrap, prefix)
        self.topic = topics["logs"]
        self.dlq_topic = topics["logs-dlq"]
        self._paused = False

    def config(self, delivery: Mapping[str, Any] | None = None) -> dict[str, Any]:
        section: dict[str, Any] = {
            "enabled": True,
            "brokers": [self.bootstrap],
            "topic": self.topic,
            "priority_routing": {"enabled": False},
            "dlq_config": {"topic": self.dlq_topic},
            "required_acks": -1,
            "compression": "zstd",
            "batch_timeout": "20ms",
        }
        _merge(section, dict(delivery or {}))
        return section

    def received(self, expected: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout

        def read() -> list[Received]:
            out = []
            for r in self._consume(self.topic, expected, max(1.0, deadline - time.monotonic())):
                if any(name == PROBE_HEADER for name, _ in r.headers):
                    continue
                doc = r.json()
                out.append(Received(doc["message"], doc["source_id"], f"{r.topic}/{r.partition}", r.offset))
            return out

        return poll_received(read, expected, timeout, interval=0.5)

    def dead_letters(self) -> list[DeadLetter]:
        out = []
        for r in self._consume(self.dlq_topic, 0, 30):
            headers = dict(r.headers)
            out.append(
                DeadLetter(
                    r.json()["message"],
                    headers["dlq_error_type"].decode(),
                    headers["dlq_error_message"].decode(),
                )
            )
        return out

    def _consume(self, topic: str, expected: int, timeout: float) -> list[Rec]:
        """consume_all with a new consumer per attempt: after a pause longer than the broker's
        session timeout the broker is fenced and unfenced, and a consumer that read the topic's
        metadata meanwhile may keep answering 'Unknown partition'."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                got = consume_all(
                    self.bootstrap, [topic], expected=expected, timeout=max(1.0, min(15.0, remaining))
                )
            except KafkaException:
                if remaining <= 0:
                    raise
                time.sleep(0.5)
                continue
            if len(got) >= expected or remaining <= 0:
                return got

    def refuse(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        entry = ConfigEntry(
            "max.message.bytes", str(TOPIC_LIMIT), incremental_operation=AlterConfigOpType.SET
        )
        resource = ConfigResource("topic", self.topic, incremental_configs=[entry])
        for fut in admin.incremental_alter_configs([resource]).values():
            fut.result(30)
        # The controller has the new limit; the broker applies it a moment later. Until a record
        # larger than it is refused, the limit is not in force (probes that pass are skipped by
        # received()).
        wait_until(self._probe_refused, 30, f"the broker to apply max.message.bytes={TOPIC_LIMIT}")

    def _probe_refused(self) -> bool:
        from confluent_kafka import KafkaError, Producer

        outcome: list[KafkaError | None] = []
        producer = Producer({"bootstrap.servers": self.bootstrap, "message.timeout.ms": 10000})
        producer.produce(
            self.topic,
            self.refused_line(-1).encode(),
            headers=[(PROBE_HEADER, b"1")],
            on_delivery=lambda err, _msg: outcome.append(err),
        )
        producer.flush(15)
        assert outcome, "the probe got no delivery report"
        err = outcome[0]
        return err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE

    def refused_line(self, i: int) -> str:
        noise = "".join(random.Random(i).choices(string.ascii_letters, k=REFUSED_SIZE))
        return f"too large for the topic {i} {noise}"

    def make_unavailable(self) -> None:
        self.cluster.stop_node(NODE, signal.SIGTERM)

    def make_available(self) -> None:
        self.release()
        if not self._running():
            self.cluster.start_node(NODE, timeout=120)

    def saturate(self) -> None:
        os.kill(self._pid(), signal.SIGSTOP)
        self._paused = True

    def release(self) -> None:
        if self._paused:
            os.kill(self._pid(), signal.SIGCONT)
            self._paused = False
            wait_until(self._answers, 60, "the broker to answer after SIGCONT")

    def _answers(self) -> bool:
        try:
            md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(self.topic, timeout=5)
        except KafkaException:
            return False
        parts = md.topics[self.topic].partitions.values() if self.topic in md.topics else []
        return bool(parts) and all(p.leader >= 0 and p.error is None for p in parts)

    def _pid(self) -> int:
        state = self.cluster.load_state()
        assert state is not None
        pid = state.nodes[0].pid
        assert pid is not None, "the broker is not running"
        return pid

    def _running(self) -> bool:
        state = self.cluster.load_state()
        return state is not None and all(n.pid is not None for n in state.nodes)


def open_harness(request: pytest.FixtureRequest, tmp: Path) -> Iterator[KafkaHarness]:
    cluster: LocalKafka = request.getfixturevalue("kafka")
    prefix: str = request.getfixturevalue("topic_prefix")
    harness = KafkaHarness(cluster, prefix)
    try:
        yield harness
    finally:
        harness.make_available()
