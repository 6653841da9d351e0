"""The Kafka sink: the delivery engine (:mod:`log_capturer.engine`) around the Kafka service.

The engine owns what every sink has (admission, backpressure, the breaker, acknowledgements,
retries, the local DLQ, replay, health); the Kafka parts, by role (docs/architecture.md, "The
Kafka sink's files"): ``config`` (the ``sinks.kafka`` model), ``request`` (a chunk's records:
topics, keys, partitions, headers), ``service`` (the producers, the poll thread, librdkafka's
callbacks, fatal-error recreation, the DLQ topic), ``delivery`` (what Kafka's errors mean, the
delivery reports as outcomes), ``native/`` (the C chunk producer); helpers: ``client`` (the
config onto librdkafka), ``encode`` and ``headers`` (the record), ``partitioning``, ``batching``
(adaptive linger), ``stats``, ``quiet``, ``names``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from log_capturer.engine.runner import DeliveryPolicy, SinkRunner
from log_capturer.observability.metrics import Metrics
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.sinks.base import SinkComponent, SinkContext
from log_capturer.sinks.kafka.client import parks_on_timeout, start_problems, tls_file_problems
from log_capturer.sinks.kafka.config import KafkaSinkConfig
from log_capturer.sinks.kafka.names import SINK_NAME, SINK_TYPE
from log_capturer.sinks.kafka.service import KafkaService
from log_capturer.sinks.tls import TLSConfig


class KafkaSink(SinkRunner):
    """``sinks.kafka``: records to Kafka topics, acknowledged by their delivery reports."""

    def __init__(
        self,
        config: KafkaSinkConfig,
        metrics: Metrics,
        dlq: DeadLetterStore | None,
        name: str = SINK_NAME,
        state_dir: str | None = None,
        worker: tuple[int, int] | None = None,
    ) -> None:
        self.config = config
        self.kafka = KafkaService(config, metrics, name, SINK_TYPE, state_dir, worker)
        policy = DeliveryPolicy.of(config, park_on_timeout=parks_on_timeout(config) and dlq is not None)
        if config.delivery == "exactly_once":
            # Nothing goes to the local DLQ around the transaction: a line parked there would be
            # replayed later, out of order and outside any transaction (and a line parked after
            # a failure in an aborted transaction is read again from the positions too). A sink
            # that cannot deliver holds its sources instead, and a failed transaction ends the
            # agent (docs/exactly-once.md).
            policy.park_on_timeout = False
            policy.backpressure = policy.backpressure.model_copy(
                update={"timeout_escalation": False, "queue_emergency_threshold": 1.0}
            )
            policy.circuit_breaker = policy.circuit_breaker.model_copy(update={"open_action": "wait"})
        super().__init__(self.kafka, policy, metrics, dlq, name, SINK_TYPE)

    @property
    def sent_to_dlq_topic(self) -> int:
        return self.sent_to_dead_letter

    @property
    def commits_positions(self) -> bool:
        """``delivery: exactly_once``: the files' positions are committed with the records."""
        return self.kafka.exactly_once

    def committed_positions(self, kind: str = "files") -> dict[str, dict[str, Any]]:
        return self.kafka.committed_positions.get(kind, {})

    def commit_positions_of(
        self, positions: Callable[[], dict[str, dict[str, Any]]], kind: str = "files"
    ) -> None:
        self.kafka.commit_positions_of(positions, kind)

    dlq_topic_key = "kafka_topic"

    def dlq_topic_stats(self) -> dict[str, Any]:
        """``GET /dlq/stats`` ``kafka_topic``: where rejected records go, and how many went."""
        dlq = self.config.dlq_config
        return {"topic": dlq.topic if dlq.enabled else None, "sent_since_start": self.sent_to_dead_letter}


def build(config: KafkaSinkConfig, ctx: SinkContext) -> KafkaSink | None:
    if not config.enabled:
        return None
    positions = ctx.config.positions
    state_dir = positions.directory if positions.enabled else None
    return KafkaSink(config, ctx.metrics, ctx.dlq, state_dir=state_dir, worker=ctx.worker)


def _raw_problems(section: Mapping[str, Any]) -> list[str]:
    """The TLS files of a section that failed validation, when its ``tls`` block is valid."""
    if section.get("enabled") is not True:
        return []
    try:
        tls = TLSConfig.model_validate(section.get("tls") or {})
    except ValidationError:
        return []
    return tls_file_problems(tls)


COMPONENT = SinkComponent(
    build=build,
    enabled=lambda config: config.enabled,
    problems=start_problems,
    raw_problems=_raw_problems,
    key_field=lambda config: config.partitioning.key_field if config.partitioning.enabled else None,
)
