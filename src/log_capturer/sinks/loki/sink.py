"""The Loki sink: the delivery engine (:mod:`log_capturer.engine`) around
:class:`~.service.LokiService`.

Everything a sink shares (admission, backpressure, the breaker, acknowledgements, retries, the
local DLQ, replay, health, stats, metrics) is the engine's; this sink only pushes entries. Its
parts: ``config`` (the ``sinks.loki`` model), ``push`` (records into entries, stream labels and
their limit, the protobuf and JSON bodies: no I/O), ``service`` (batching, pushes, what Loki's
answers mean, replay).
"""

from __future__ import annotations

from log_capturer.engine.runner import DeliveryPolicy, SinkRunner
from log_capturer.observability.metrics import Metrics
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.sinks.base import SinkComponent, SinkContext
from log_capturer.sinks.loki.config import LokiSinkConfig
from log_capturer.sinks.loki.service import LokiService
from log_capturer.sinks.tls import file_problems

#: The ``sink_name`` / ``sink_type`` label of its metrics.
SINK_TYPE = "loki"
#: Its name in /health, /stats, component_health, logs and the ``failed_sink`` of DLQ entries.
SINK_NAME = "loki_sink"


def policy_of(config: LokiSinkConfig, dlq: DeadLetterStore | None) -> DeliveryPolicy:
    """The engine's settings of ``sinks.loki``: ``dlq_config`` decides whether what times out is
    parked (``send_on_timeout``) and whether waiting lines overflow (``send_on_queue_full``)."""
    dc = config.dlq_config
    section = config
    if not (dc.enabled and dc.send_on_queue_full):
        # No overflow: a stalled sink holds its sources until Loki answers.
        bp = config.backpressure_config.model_copy(
            update={"queue_emergency_threshold": 1.0, "timeout_escalation": False}
        )
        section = config.model_copy(update={"backpressure_config": bp})
    return DeliveryPolicy.of(section, park_on_timeout=dlq is not None and dc.enabled and dc.send_on_timeout)


class LokiSink(SinkRunner):
    """``sinks.loki``: records pushed to Loki, acknowledged once Loki answered 2xx."""

    def __init__(
        self,
        config: LokiSinkConfig,
        metrics: Metrics,
        dlq: DeadLetterStore | None,
        key_field: str | None = None,
        name: str = SINK_NAME,
    ) -> None:
        self.config = config
        self.loki = LokiService(config, key_field, name, metrics, SINK_TYPE)
        policy = policy_of(config, dlq)
        super().__init__(self.loki, policy, metrics, dlq, name, SINK_TYPE)
        if policy.park_on_timeout:
            # A record Loki keeps refusing for ``timeout`` (away, 5xx, 429) is parked (and
            # acknowledged), to be pushed by the DLQ's replay once Loki takes pushes again.
            self.loki.park_after = config.timeout


def build(config: LokiSinkConfig, ctx: SinkContext) -> LokiSink | None:
    if not config.enabled:
        return None
    from log_capturer.app import key_field_of  # the agent's choice of partition key field

    return LokiSink(config, ctx.metrics, ctx.dlq, key_field_of(ctx.config))


def _problems(config: LokiSinkConfig) -> list[str]:
    """Certificate files the agent cannot read."""
    return file_problems("sinks.loki.tls", config.tls)


COMPONENT = SinkComponent(build=build, enabled=lambda config: config.enabled, problems=_problems)
