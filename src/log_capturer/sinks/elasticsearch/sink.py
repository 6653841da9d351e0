"""The Elasticsearch / OpenSearch sink: the delivery engine (:mod:`log_capturer.engine`) around
:class:`~.service.ElasticsearchService`.

Everything a sink shares (admission, backpressure, the breaker, acknowledgements, retries, the
local DLQ, replay, health, stats, metrics) is the engine's; this sink only speaks ``_bulk``. Its
parts: ``config`` (the ``sinks.elasticsearch`` model), ``bulk`` (documents, ids, request bodies,
what answers mean: no I/O), ``service`` (batching, the sender threads, outcomes, replay).
"""

from __future__ import annotations

from log_capturer.engine.runner import DeliveryPolicy, SinkRunner
from log_capturer.observability.metrics import Metrics
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.sinks.base import SinkComponent, SinkContext
from log_capturer.sinks.elasticsearch.config import ElasticsearchSinkConfig
from log_capturer.sinks.elasticsearch.service import ElasticsearchService
from log_capturer.sinks.tls import file_problems

#: The ``sink_type`` label of its metrics.
SINK_TYPE = "elasticsearch"
#: Its name in /health, /stats, component_health, logs and the ``failed_sink`` of DLQ entries.
SINK_NAME = "elasticsearch_sink"


class ElasticsearchSink(SinkRunner):
    """``sinks.elasticsearch``: records written with ``_bulk``, acknowledged once the server
    answered for each of them."""

    def __init__(
        self,
        config: ElasticsearchSinkConfig,
        metrics: Metrics,
        dlq: DeadLetterStore | None,
        key_field: str | None = None,
        name: str = SINK_NAME,
    ) -> None:
        self.config = config
        self.bulk = ElasticsearchService(config, metrics, key_field, name)
        policy = DeliveryPolicy.of(
            config, park_on_timeout=dlq is not None and config.dlq_config.send_on_timeout
        )
        super().__init__(self.bulk, policy, metrics, dlq, name, SINK_TYPE)
        if policy.park_on_timeout:
            # A record the cluster keeps failing for ``timeout`` is parked (and acknowledged), to
            # be sent by the DLQ's replay once it recovers, with the same document id.
            self.bulk.park_after = config.timeout


def build(config: ElasticsearchSinkConfig, ctx: SinkContext) -> ElasticsearchSink | None:
    if not config.enabled:
        return None
    from log_capturer.app import key_field_of  # the agent's choice of partition key field

    return ElasticsearchSink(config, ctx.metrics, ctx.dlq, key_field_of(ctx.config))


def _problems(config: ElasticsearchSinkConfig) -> list[str]:
    """TLS files must be readable when an endpoint is https://."""
    if any(u.startswith("https://") for u in config.endpoints):
        return file_problems("sinks.elasticsearch.tls", config.tls)
    return []


COMPONENT = SinkComponent(build=build, enabled=lambda config: config.enabled, problems=_problems)
