"""Every Kafka and agent metric moves with what really happened, checked against what reached Kafka."""

from __future__ import annotations

import collections
import signal
from pathlib import Path

import pytest

from log_capturer.devtools.prometheus_local import promtool
from tests.integration.observability.metrics_text import parse, series, value
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


def test_kafka_and_agent_metrics_match_the_records_in_kafka(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines = (
        [f"ERROR payment {i} failed for order {i * 7} tenant_id=t{i % 5}" for i in range(300)]
        + [f"INFO user {i} logged in tenant_id=t{i % 3}" for i in range(200)]
        + [f"DEBUG cache miss {i}" for i in range(100)]
        + [f"no level here {i}" for i in range(50)]
    )
    cfg = agent_config(tmp_path, bootstrap, topics)
    path = write_config(tmp_path / "config.yaml", cfg)
    log = tmp_path / "logs" / "app.log"
    log.write_text("".join(f"{line}\n" for line in lines))
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        records = consume_all(bootstrap, topics.values(), expected=len(lines), timeout=90)
        assert len(records) == len(lines)
        per_topic = collections.Counter(r.topic for r in records)
        bytes_per_topic = collections.Counter()
        for r in records:
            bytes_per_topic[r.topic] += len(r.value)
        per_partition = collections.Counter((r.topic, str(r.partition)) for r in records)

        def partitions_counted() -> bool:
            got = series(parse(agent.metrics()), "kafka_partition_messages_total")
            return {(dict(k)["topic"], dict(k)["partition"]): v for k, v in got.items() if v} == per_partition

        # Statistics arrive every 2 s: the per-partition counts catch up with the broker's.
        wait_until(partitions_counted, 30, "kafka_partition_messages_total to match the partitions")
        wait_until(
            lambda: value(parse(agent.metrics()), "files_lag_bytes") == 0, 30, "every byte acknowledged"
        )
        text = agent.metrics()
        m = parse(text)
        for topic, n in per_topic.items():
            assert value(m, "kafka_messages_produced_total", topic=topic, status="success") == n, topic
            assert value(m, "kafka_batch_size_messages_sum", topic=topic) == n, topic
            chunks = value(m, "kafka_batch_size_messages_count", topic=topic)
            assert chunks is not None and 1 <= chunks <= n
            assert value(m, "kafka_batch_send_duration_seconds_count", topic=topic) == chunks
            assert value(m, "kafka_message_size_bytes_count", topic=topic) == n
            assert value(m, "kafka_message_size_bytes_sum", topic=topic) == bytes_per_topic[topic]
        assert per_topic[topics["logs-high-priority"]] == 300
        assert per_topic[topics["logs"]] == 50
        # 300 similar lines compress well under zstd.
        ratio = value(
            m, "kafka_compression_ratio", topic=topics["logs-high-priority"], compression_type="zstd"
        )
        assert ratio is not None and ratio > 1.5
        assert not series(m, "kafka_producer_errors_total")
        assert not any(dict(k)["status"] == "error" for k in series(m, "kafka_messages_produced_total"))
        assert value(m, "kafka_connection_status", broker=bootstrap, sink_name="kafka") == 1
        assert value(m, "kafka_circuit_breaker_state", sink_name="kafka") == 0
        wait_until(
            lambda: value(parse(agent.metrics()), "kafka_queue_size", sink_name="kafka") == 0,
            10,
            "the producer queue to empty",
        )
        m = parse(agent.metrics())
        assert value(m, "kafka_queue_utilization", sink_name="kafka") == 0
        for level in ("warning", "critical", "emergency"):  # no backpressure: its series exist, at 0
            assert value(m, "kafka_backpressure_events_total", sink_name="kafka", threshold_level=level) == 0
        # Agent-wide metrics.
        assert value(
            m, "logs_processed_total", source_type="file", source_id=str(log), pipeline="default"
        ) == len(lines)
        assert value(m, "logs_sent_total", sink_type="kafka", status="success") == len(lines)
        sends = value(m, "sink_send_duration_seconds_count", sink_type="kafka")
        assert sends is not None and sends >= 1
        assert value(m, "dispatcher_queue_utilization") == 0
        assert value(m, "files_monitored") == 1
        assert value(m, "file_lag_bytes", source_type="file", path=str(log)) == 0
        assert value(m, "files_lagging") == 0
        assert value(m, "component_health", component_type="sink", component_name="kafka_sink") == 1
        assert value(m, "component_health", component_type="check", component_name="queue") == 1
        assert value(m, "component_health", component_type="source", component_name="file_source") == 1
        rss = value(m, "process_resident_memory_bytes")
        assert rss is not None and rss > 10 * 1024 * 1024
        fds = value(m, "process_open_fds")
        assert fds is not None and fds > 3
        cpu = value(m, "process_cpu_seconds_total")
        assert cpu is not None and cpu > 0
        # promtool's lint of the exposition format and metric naming conventions.
        check = promtool("check", "metrics", input_text=text)
        assert check.returncode == 0, check.stdout + check.stderr
        assert agent.stop(signal.SIGTERM) == 0
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
