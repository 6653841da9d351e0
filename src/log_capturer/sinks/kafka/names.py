"""The Kafka sink's two names, side by side: one for metrics, one for everything else.

- :data:`SINK_TYPE` (``"kafka"``) is the sink's type. It is the ``sink_name`` label of every
  ``kafka_*`` metric that has one (``kafka_queue_size``, ``kafka_queue_utilization``,
  ``kafka_backpressure_events_total``, ``kafka_circuit_breaker_state``,
  ``kafka_connection_status``), because the design document queries
  ``kafka_queue_utilization{sink_name="kafka"}``; and the ``sink_type`` label of
  ``logs_sent_total`` and ``sink_send_duration_seconds``.
- :data:`SINK_NAME` (``"kafka_sink"``) is what people read elsewhere: ``services.sinks[].name`` of
  ``/health`` (the document's health example), ``/stats``, ``component_health``, the agent's own
  logs, thread names and the ``failed_sink`` of DLQ entries.

An agent has one Kafka sink, so the type is enough to tell its series apart.
"""

from __future__ import annotations

#: The ``sink_name`` label of the kafka_* metrics and the ``sink_type`` of the agent-wide ones.
SINK_TYPE = "kafka"
#: The sink's name in /health, /stats, component_health, logs and DLQ entries.
SINK_NAME = "kafka_sink"
