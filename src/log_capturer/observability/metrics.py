"""Every Prometheus metric the agent exports, defined once.

Each agent owns a :class:`Metrics` with its own registry, so several agents
(or tests) in one process never collide. Hot-path code updates counters once
per chunk or batch, never once per line.

Besides the metrics below, the registry holds collectors evaluated at scrape
time, so they cost nothing between scrapes:

- ``process_*`` (prometheus_client's process collector: resident and virtual
  memory, CPU seconds, open and maximum descriptors, start time);
- ``component_health`` and the per-file lag gauges, registered by the agent
  (:mod:`log_capturer.observability.health`, :mod:`log_capturer.observability.lag`).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.metrics import MetricWrapperBase

from log_capturer.observability.bulk import BulkHistogram

#: Records of one chunk for one topic: from a single line up to a full read buffer of short lines.
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000)
#: Produce-to-acknowledgement time: milliseconds when healthy, up to a minute across retries.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Encoded record sizes: a short line is ~200 bytes of JSON, max_message_bytes defaults to 1 MiB.
_SIZE_BUCKETS = (64, 128, 256, 512, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
#: A transaction's commit: tens of milliseconds when healthy, up to the delivery timeout.
_COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_M = TypeVar("_M", bound=MetricWrapperBase)


class Children(Generic[_M]):
    """The children of one labelled metric, each looked up in the metric once.

    ``metric.labels(...)`` checks and converts its values and takes the metric's lock on every
    call; the hot path (a chunk of one line is the common case with many slow files) asks for
    the same few children thousands of times a second, so it keeps them here by their values.
    A child is created on first use, as ``labels()`` would (a series shows in ``/metrics`` only
    once it was counted). Only for metrics whose children are never removed. Safe from several
    threads: two threads that miss at once get the same child from the metric.
    """

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: _M) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], _M] = {}

    def get(self, *values: str) -> _M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child

    def __len__(self) -> int:
        return len(self._children)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=r)
        # --- agent-wide --------------------------------------------------------------------
        self.logs_processed = Counter(
            "logs_processed_total",
            "Lines read from sources and accepted by the dispatcher (pipeline: the processing pipeline "
            "they go through, 'default' for none).",
            ["source_type", "source_id", "pipeline"],
            registry=r,
        )
        self.config_reloads = Counter(
            "config_reloads_total",
            "Configuration reloads (POST /config/reload, SIGHUP) by outcome: reloaded, unchanged, "
            "refused (invalid, or a setting that needs a restart changed), failed (not applied).",
            ["status"],
            registry=r,
        )
        self.logs_sent = Counter(
            "logs_sent_total",
            "Lines acknowledged by a sink (status=success) or parked (status=dlq).",
            ["sink_type", "status"],
            registry=r,
        )
        self.errors = Counter(
            "errors_total",
            "Errors by component and type.",
            ["component", "error_type"],
            registry=r,
        )
        self.dispatcher_queue_utilization = Gauge(
            "dispatcher_queue_utilization",
            "Dispatcher queue fill, 0.0-1.0.",
            registry=r,
        )
        self.files_monitored = Gauge(
            "files_monitored",
            "Files currently followed (including rotated files still being read).",
            registry=r,
        )
        self.containers_monitored = Gauge(
            "containers_monitored",
            "Containers (Docker) and pod containers (Kubernetes) whose logs are followed.",
            registry=r,
        )
        self.sink_send_duration = Histogram(
            "sink_send_duration_seconds",
            "Time from handing a chunk to a sink until its last line was acknowledged.",
            ["sink_type"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lines_truncated = Counter(
            "logs_truncated_total",
            "Lines longer than max_line_bytes, truncated.",
            ["source_type"],
            registry=r,
        )
        # --- Kafka -------------------------------------------------------------------------
        self.kafka_messages_produced = Counter(
            "kafka_messages_produced_total",
            "Records acknowledged by Kafka (status=success, once per record) and failed delivery "
            "attempts (status=error, once per failed attempt: a retried record may count several times).",
            ["topic", "status"],
            registry=r,
        )
        self.kafka_producer_errors = Counter(
            "kafka_producer_errors_total",
            "Failed delivery reports per topic and librdkafka error name (msg_timed_out, "
            "msg_size_too_large, ...).",
            ["topic", "error_type"],
            registry=r,
        )
        self.kafka_queue_size = Gauge(
            "kafka_queue_size",
            "Records held by the producer (queued or in flight), sampled every second.",
            ["sink_name"],
            registry=r,
        )
        self.kafka_queue_utilization = Gauge(
            "kafka_queue_utilization",
            "Producer queue fill: kafka_queue_size / sinks.kafka.queue_size, 0.0-1.0.",
            ["sink_name"],
            registry=r,
        )
        self.kafka_connection_status = Gauge(
            "kafka_connection_status",
            "1 when the connection to the broker is up, 0 when down (librdkafka statistics, every 2 s).",
            ["broker", "sink_name"],
            registry=r,
        )
        self.kafka_batch_size = Histogram(
            "kafka_batch_size_messages",
            "Records of one request (a chunk, or small chunks handed over together) sent to one topic "
            "(one observation per request and topic).",
            ["topic"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.kafka_batch_send_duration = Histogram(
            "kafka_batch_send_duration_seconds",
            "Time from producing a request to the last delivery report of its records, per topic.",
            ["topic"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.kafka_dlq_messages = Counter(
            "kafka_dlq_messages_total",
            "Records sent to the dead-letter queue, by reason.",
            ["topic", "reason"],
            registry=r,
        )
        self.kafka_partition_messages = Counter(
            "kafka_partition_messages_total",
            "Records transmitted to each topic partition (librdkafka statistics: txmsgs).",
            ["topic", "partition"],
            registry=r,
        )
        self.kafka_compression_ratio = Gauge(
            "kafka_compression_ratio",
            "Uncompressed / compressed bytes of recent produced batches (librdkafka batch statistics).",
            ["topic", "compression_type"],
            registry=r,
        )
        self.kafka_backpressure_events = Counter(
            "kafka_backpressure_events_total",
            "Times the sink queue crossed a backpressure threshold.",
            ["sink_name", "threshold_level"],
            registry=r,
        )
        self.kafka_circuit_breaker_state = Gauge(
            "kafka_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["sink_name"],
            registry=r,
        )
        self.kafka_message_size = BulkHistogram(
            "kafka_message_size_bytes",
            "Size of produced record values.",
            ["topic"],
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        # --- Kafka exactly-once (sinks.kafka.delivery: exactly_once) ---------------------------
        self.kafka_transactions = Counter(
            "kafka_transactions_total",
            "Kafka transactions by outcome: committed, aborted (an agent ends with exit status 75 after "
            "an abort: the count is kept across that restart in positions.directory).",
            ["sink_name", "outcome"],
            registry=r,
        )
        self.kafka_transaction_commit_duration = Histogram(
            "kafka_transaction_commit_duration_seconds",
            "A commit: hand-overs held, the last acknowledgements awaited, the positions record written, "
            "EndTxn.",
            ["sink_name"],
            buckets=_COMMIT_BUCKETS,
            registry=r,
        )
        self.kafka_transaction_records = Histogram(
            "kafka_transaction_records",
            "Records of one committed transaction (the positions record left out).",
            ["sink_name"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        # --- Elasticsearch / OpenSearch sink (besides the kafka_* families the engine fills
        # for every sink, with the index as the topic, and the HTTP sinks' sink_request* ones) --
        self.es_item_errors = Counter(
            "elasticsearch_item_errors_total",
            "Items of _bulk answers that were not delivered, by the server's error type.",
            ["sink_name", "error_type"],
            registry=r,
        )
        # --- dead-letter queue and reliability --------------------------------------------
        self.dlq_entries = Gauge(
            "dlq_entries",
            "Entries in the local dead-letter store (updated when it is read: stats, reprocessing).",
            registry=r,
        )
        self.dlq_size_bytes = Gauge(
            "dlq_size_bytes",
            "Bytes of the local dead-letter store's segment files.",
            registry=r,
        )
        self.dlq_entries_removed = Counter(
            "dlq_entries_removed_total",
            "Entries removed from the local DLQ: replayed (delivered), expired (retention_days), "
            "purged (by hand), dropped_full (when_full: drop_oldest).",
            ["reason"],
            registry=r,
        )
        self.dlq_reprocessed = Counter(
            "dlq_reprocessed_total",
            "Entries the reprocessor replayed, by result (delivered or failed).",
            ["result"],
            registry=r,
        )
        # --- syslog, stdin and HTTP ingest sources -----------------------------------------
        self.source_lines_received = Counter(
            "source_lines_received_total",
            "Messages received by the syslog, stdin and HTTP ingest sources.",
            ["source", "transport"],
            registry=r,
        )
        self.source_parse_errors = Counter(
            "source_parse_errors_total",
            "Messages a source could not parse; they are shipped as received, as plain text.",
            ["source", "reason"],
            registry=r,
        )
        self.source_lines_dropped = Counter(
            "source_lines_dropped_total",
            "Messages received but never queued (the agent stopped while the queue stayed full, or the "
            "source crashed on them).",
            ["source", "reason"],
            registry=r,
        )
        self.source_connections = Gauge(
            "source_connections",
            "Open TCP connections of a listening source.",
            ["source"],
            registry=r,
        )
        self.http_ingest_requests = Counter(
            "http_ingest_requests_total",
            "POST /api/v1/logs requests by HTTP status code (4xx and 5xx are rejections).",
            ["code"],
            registry=r,
        )
        self.otlp_requests = Counter(
            "otlp_requests_total",
            "OTLP/HTTP POST /v1/logs requests by HTTP status code (4xx and 5xx are rejections; 429 "
            "and 503 are retried by the exporters).",
            ["code"],
            registry=r,
        )
        self.otlp_records_rejected = Counter(
            "otlp_records_rejected_total",
            "OTLP log records that were not shipped, by reason (empty_body, invalid_trace_id, "
            "invalid_field) and outcome (parked: in the local DLQ; skipped: otlp.empty_bodies is "
            "skip; dropped: the DLQ could not take them). The client is told (partial success).",
            ["reason", "outcome"],
            registry=r,
        )
        self.http_ingest_records_rejected = Counter(
            "http_ingest_records_rejected_total",
            "HTTP ingest records that were not shipped, by reason (invalid_json, invalid_msgpack, "
            "not_an_object, missing_message, empty_message, invalid_field) and outcome (parked: in "
            "the local DLQ; skipped: http_ingest.empty_messages is skip; dropped: the DLQ could not "
            "take them). The request's other records are shipped.",
            ["reason", "outcome"],
            registry=r,
        )
        self.forward_records_rejected = Counter(
            "forward_records_rejected_total",
            "Forward protocol records that were not shipped, by reason (invalid_message, "
            "invalid_event, invalid_msgpack, invalid_compression, missing_message, empty_message, "
            "invalid_field) and outcome (parked: in the local DLQ; skipped: forward.empty_messages is "
            "skip; dropped: the DLQ could not take them). The other records of their message are shipped.",
            ["reason", "outcome"],
            registry=r,
        )
        self.forward_acks = Counter(
            "forward_acks_total",
            "Forward protocol acknowledgements ({ack: chunk}) sent, each once every record of its "
            "message was delivered or parked.",
            registry=r,
        )
        # --- the Kafka source ----------------------------------------------------------------
        self.kafka_source_records = Counter(
            "kafka_source_records_consumed_total",
            "Records the Kafka source read, by topic.",
            ["topic"],
            registry=r,
        )
        self.kafka_source_rejected = Counter(
            "kafka_source_records_rejected_total",
            "Kafka records that could not be made records (reason: invalid_json, not_an_object, "
            "missing_message, empty_message, invalid_field), by outcome (parked in the local DLQ, or "
            "dropped: the DLQ could not take them; their partition's offset then stops there).",
            ["reason", "outcome"],
            registry=r,
        )
        self.kafka_source_committed = Gauge(
            "kafka_source_committed_offset",
            "The offset the Kafka source last committed per partition: every record before it was "
            "delivered or parked by every sink.",
            ["topic", "partition"],
            registry=r,
        )
        self.kafka_source_lag = Gauge(
            "kafka_source_lag",
            "Records of a partition not committed yet: its high watermark minus the committed offset.",
            ["topic", "partition"],
            registry=r,
        )
        self.kafka_source_rebalances = Counter(
            "kafka_source_rebalances_total",
            "Partitions assigned to or revoked from the Kafka source (kind: assign, revoke, lost).",
            ["kind"],
            registry=r,
        )
        self.kafka_source_paused = Gauge(
            "kafka_source_paused",
            "1 while the Kafka source's partitions are paused because the sinks hold it back.",
            registry=r,
        )
        # --- processing pipelines ----------------------------------------------------------
        self.pipeline_lines = Counter(
            "pipeline_lines_total",
            "Lines that went through a processing pipeline.",
            ["pipeline"],
            registry=r,
        )
        self.pipeline_step_failures = Counter(
            "pipeline_step_failures_total",
            "Lines a pipeline step could not handle (left as they were), by step ('index:type').",
            ["pipeline", "step"],
            registry=r,
        )
        self.pipeline_redactions = Counter(
            "pipeline_redactions_total",
            "Secrets masked by redact steps, by rule ('key' = a value under a secret-named key).",
            ["pipeline", "rule"],
            registry=r,
        )
        # --- HTTP sinks (Loki, Elasticsearch) -------------------------------------------------------------
        self.sink_requests = Counter(
            "sink_requests_total",
            "Requests an HTTP sink made to its server, by answer: the HTTP status, or 'error' when "
            "none came (refused connection, request_timeout).",
            ["sink_type", "status"],
            registry=r,
        )
        self.sink_request_duration = Histogram(
            "sink_request_duration_seconds",
            "Time from sending a request to its answer, per HTTP sink.",
            ["sink_type"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sink_request_bytes = Counter(
            "sink_request_bytes_total",
            "Bytes of request bodies sent by an HTTP sink (compressed: 'wire'; before compression: 'raw').",
            ["sink_type", "encoding"],
            registry=r,
        )
        self.loki_stream_overflow = Counter(
            "loki_stream_overflow_total",
            'Entries sent under the overflow stream (stream_overflow="true") because their own '
            "labels would have made more than max_streams streams.",
            ["sink_name"],
            registry=r,
        )
        self.loki_streams = Gauge(
            "loki_streams",
            "Distinct streams (tenant and label set) the Loki sink has created.",
            ["sink_name"],
            registry=r,
        )
