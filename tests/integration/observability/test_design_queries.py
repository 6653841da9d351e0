"""Every PromQL query of the design document answers, as written, from a real Prometheus.

The queries are read at test time from the ```promql blocks of the design document
(``../shared/spec/kafka-integration.md`` beside the repository), so a query added there without a
definition of what "works" means for it fails here. Prometheus (Debian's) scrapes, every second, an
agent that ships lines to the session's real Kafka broker, and loads the project's rule files
(``deploy/prometheus``), as docker-compose's Prometheus does.

Each query runs literally, except one: ``kafka_connection_status{broker="kafka:9092"}``. The
``broker`` label is the address the agent connects to; ``kafka:9092`` is the broker of the
document's docker-compose network, which does not exist here, so the query runs with the session
broker's address (``127.0.0.1:<port>``) in its place. Nothing else is rewritten.

The error and DLQ queries only have series once something failed (Prometheus has no series for a
counter whose ``error_type`` or ``reason`` never happened), so the agent is made to fail one record
for real: the broker refuses a record larger than the ``logs`` topic's ``max.message.bytes``,
which is a delivery error (``msg_size_too_large``) and goes to the DLQ topic (``send_error``).
"""

from __future__ import annotations

import math
import random
import re
import signal
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from log_capturer.devtools.prometheus_local import LocalPrometheus, PrometheusError
from tests.integration.observability.conftest import LineWriter
from tests.support import REPO, AgentProcess, agent_config, create_prefixed_topics, write_config

pytestmark = pytest.mark.integration

SPEC = REPO.parent / "shared" / "spec" / "kafka-integration.md"
RULES = [REPO / "deploy" / "prometheus" / "alerts.yml", REPO / "deploy" / "prometheus" / "recording.yml"]
DOC_BROKER = 'broker="kafka:9092"'

Result = list[dict[str, Any]]


def design_queries() -> list[str]:
    """The queries of the document's ```promql blocks: every line that is not blank or a comment."""
    blocks = re.findall(r"```promql\n(.*?)```", SPEC.read_text(), re.S)
    return [q.strip() for b in blocks for q in b.splitlines() if q.strip() and not q.lstrip().startswith("#")]


def values(result: Result) -> list[float]:
    return [float(r["value"][1]) for r in result]


def positive_somewhere(result: Result) -> bool:
    """A rate while lines flow: some series (a topic that got lines in the window) is above 0."""
    return any(v > 0 for v in values(result))


def present(result: Result) -> bool:
    """A rate of a counter that moved once: the series exist; their rate may be 0 by now."""
    return all(v >= 0 for v in values(result))


def quantile_exists(result: Result) -> bool:
    """``histogram_quantile`` over the recorded bucket rates (``deploy/prometheus/recording.yml``):
    one series per topic; NaN for a topic that had no observation in the rule's window."""
    return all(math.isnan(v) or v >= 0 for v in values(result))


def utilization(result: Result) -> bool:
    """The Kafka sink's producer queue fill, one series, 0-1."""
    return len(result) == 1 and 0 <= values(result)[0] <= 1


def percent(result: Result) -> bool:
    return len(result) == 1 and 0 <= values(result)[0] <= 100


def exactly(*want: float) -> Callable[[Result], bool]:
    def check(result: Result) -> bool:
        return values(result) == list(want)

    return check


def labels_include(label: str, *want: str) -> Callable[[Result], bool]:
    def check(result: Result) -> bool:
        return set(want) <= {r["metric"].get(label) for r in result}

    return check


#: What "works" means for each query of the document, as written there.
WORKS: dict[str, Callable[[Result], bool]] = {
    'rate(kafka_messages_produced_total{status="success"}[1m])': positive_somewhere,
    "rate(kafka_producer_errors_total[1m])": present,
    "histogram_quantile(0.95, kafka_batch_size_messages)": quantile_exists,
    "histogram_quantile(0.95, kafka_batch_send_duration_seconds)": quantile_exists,
    'kafka_queue_utilization{sink_name="kafka"}': utilization,
    # No backpressure on a healthy agent: one series per threshold level, at rate 0.
    "rate(kafka_backpressure_events_total[5m])": labels_include(
        "threshold_level", "warning", "critical", "emergency"
    ),
    f"kafka_connection_status{{{DOC_BROKER}}}": exactly(1.0),  # run with the session broker
    'kafka_circuit_breaker_state{sink_name="kafka"}': exactly(0.0),  # closed
    'sum(rate(kafka_messages_produced_total{status="success"}[1m])) by (topic)': positive_somewhere,
    "sum(rate(kafka_producer_errors_total[1m])) by (error_type)": labels_include(
        "error_type", "msg_size_too_large"
    ),
    'kafka_queue_utilization{sink_name="kafka"} * 100': percent,
    "sum(rate(kafka_dlq_messages_total[5m])) by (reason)": labels_include("reason", "send_error"),
}


def limit_topic(bootstrap: str, topic: str, max_bytes: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entry = ConfigEntry("max.message.bytes", str(max_bytes), incremental_operation=AlterConfigOpType.SET)
    res = ConfigResource("topic", topic, incremental_configs=[entry])
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(30)


def test_the_design_documents_queries_are_read_from_it() -> None:
    queries = design_queries()
    assert set(queries) == set(WORKS), "a query of the document has no definition of 'works' here"
    assert len(queries) == 12


def test_every_design_document_query_answers_from_prometheus(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    limit_topic(bootstrap, topics["logs"], 2000)
    cfg = agent_config(tmp_path, bootstrap, topics)
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    queries = {q: q.replace(DOC_BROKER, f'broker="{bootstrap}"') for q in design_queries()}
    assert sum(DOC_BROKER in q for q in queries) == 1
    prom = LocalPrometheus(tmp_path / "prometheus", [f"127.0.0.1:{cfg['metrics']['port']}"], rule_files=RULES)
    try:
        try:
            prom.start(timeout=60)
        except PrometheusError as exc:
            pytest.fail(f"Prometheus did not start:\n{exc}", pytrace=False)
        with LineWriter(tmp_path / "logs" / "app.log"):
            # Random text: larger than the topic's limit even compressed; no level: the `logs` topic.
            big = "".join(random.Random(7).choices(string.ascii_letters, k=8000))
            with (tmp_path / "logs" / "app.log").open("a") as f:
                f.write(f"too large for the topic {big}\n")
            failing: dict[str, Result] = {}
            deadline = time.monotonic() + 90
            while True:
                answers = {doc: prom.query(q) for doc, q in queries.items()}
                failing = {doc: r for doc, r in answers.items() if not r or not WORKS[doc](r)}
                if not failing or time.monotonic() > deadline:
                    break
                time.sleep(1)
        assert not failing, f"queries of the design document that do not work: {failing}"
        assert agent.stop(signal.SIGTERM) == 0
    finally:
        prom.stop()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
