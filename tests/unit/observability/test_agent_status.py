from __future__ import annotations

from rich.console import Console

from log_capturer.observability.agent_status import Sample, render, view


def stats(lines_in: int, delivered: int, parked: int, by_topic: dict[str, int]) -> dict[str, object]:
    return {
        "dispatcher": {
            "lines_in": lines_in,
            "queue_utilization": 0.25,
            "queue_size": 250,
            "queue_capacity": 1000,
        },
        "sinks": {
            "kafka_sink": {
                "delivered": delivered,
                "parked": parked,
                "outstanding": 7,
                "delivered_by_topic": by_topic,
            }
        },
        "dlq": {"entries_written": parked},
        "files": {"monitored": 2, "open_files": 2, "in_flight_lines": 7, "lag_bytes": {"/a": 10, "/b": 5}},
    }


HEALTH = {
    "status": "degraded",
    "version": "0.1.0",
    "uptime": "1m2s",
    "services": {
        "sinks": [
            {
                "name": "kafka_sink",
                "status": "degraded",
                "message": "3 records waiting",
                "circuit_breaker": "closed",
            }
        ]
    },
    "checks": {
        "queue": {"status": "healthy", "utilization": 0.25},
        "dlq": {"status": "degraded", "entries": 2},
    },
}


def test_rates_come_from_two_samples() -> None:
    prev = Sample(10.0, HEALTH, stats(1000, 900, 0, {"logs": 900}))
    cur = Sample(12.0, HEALTH, stats(3000, 2800, 100, {"logs": 2000, "logs-high-priority": 800}))
    v = view(prev, cur)
    assert v["lines_in_per_second"] == 1000.0
    assert v["lines_out_per_second"] == 1000.0  # delivered + parked
    assert v["topics_per_second"] == {"logs": 550.0, "logs-high-priority": 400.0}
    assert v["sinks"] == [
        {
            "name": "kafka_sink",
            "status": "degraded",
            "message": "3 records waiting",
            "circuit_breaker": "closed",
            "outstanding": 7,
            "lines_out_per_second": 1000.0,
        }
    ]
    assert v["checks"]["dlq"] == {"status": "degraded", "entries": 2}
    assert v["dlq"] == {"entries_written": 100}
    assert v["files"]["lag_bytes"] == 15


def test_render_shows_every_part() -> None:
    v = view(Sample(0.0, HEALTH, stats(0, 0, 0, {})), Sample(1.0, HEALTH, stats(50, 40, 0, {"logs": 40})))
    console = Console(record=True, width=160)
    console.print(render(v, "http://127.0.0.1:8401"))
    text = console.export_text()
    for part in (
        "degraded",
        "kafka_sink",
        "closed",
        "3 records waiting",
        "25.0%",
        "entries=2",
        "logs",
        "50.0",
    ):
        assert part in text, part


def test_sources_show_their_state_restarts_and_error() -> None:
    health = {
        **HEALTH,
        "services": {
            **HEALTH["services"],
            "sources": [
                {
                    "name": "file_source",
                    "status": "degraded",
                    "restarts": 2,
                    "last_error": "RuntimeError: boom",
                    "message": "crashed 2 times in a row: RuntimeError: boom; restarts: 2",
                },
                {"name": "syslog_source", "status": "healthy", "restarts": 1, "last_error": "OSError: x"},
                {"name": "container_source", "status": "healthy", "restarts": 0, "worker": 1},
            ],
        },
    }
    v = view(Sample(0.0, health, stats(0, 0, 0, {})), Sample(1.0, health, stats(0, 0, 0, {})))
    assert v["sources"] == [
        {
            "name": "file_source",
            "status": "degraded",
            "restarts": 2,
            "message": "crashed 2 times in a row: RuntimeError: boom; restarts: 2",
        },
        {"name": "syslog_source", "status": "healthy", "restarts": 1, "message": "last error: OSError: x"},
        {"name": "container_source (worker 1)", "status": "healthy", "restarts": 0, "message": ""},
    ]
    console = Console(record=True, width=200)
    console.print(render(v, "http://127.0.0.1:8401"))
    text = console.export_text()
    for part in (
        "sources",
        "file_source",
        "crashed 2 times in a row: RuntimeError: boom",
        "last error: OSError",
    ):
        assert part in text, part


def test_overflowed_lines_are_counted_once_in_the_outgoing_rate() -> None:
    """Overflowed lines are a part of ``parked`` (the sink's /stats): adding both counted them twice."""
    before = stats(1000, 900, 0, {"logs": 900})
    after = stats(3000, 900, 2000, {"logs": 900})
    sink = after["sinks"]["kafka_sink"]  # type: ignore[index]
    sink["overflowed_to_dlq"] = 2000
    v = view(Sample(10.0, HEALTH, before), Sample(12.0, HEALTH, after))
    assert v["lines_out_per_second"] == 1000.0  # 2,000 parked in 2 s, not 4,000


def test_with_two_sinks_each_has_its_rate_and_the_agent_the_busiest() -> None:
    def two(kafka: int, files: int) -> dict[str, object]:
        st = stats(0, kafka, 0, {"logs": kafka})
        st["sinks"]["local_file_sink"] = {"delivered": files, "parked": 0}  # type: ignore[index]
        return st

    health = {**HEALTH, "services": {"sinks": [{"name": "kafka_sink"}, {"name": "local_file_sink"}]}}
    v = view(Sample(0.0, health, two(0, 0)), Sample(2.0, health, two(2000, 1000)))
    # Every line goes to both sinks: the agent ships 1,000 lines/s, not their sum.
    assert v["lines_out_per_second"] == 1000.0
    assert [(s["name"], s["lines_out_per_second"]) for s in v["sinks"]] == [
        ("kafka_sink", 1000.0),
        ("local_file_sink", 500.0),
    ]


def test_exactly_once_transactions_are_shown_per_sink() -> None:
    def with_txns(committed: int, aborted: int) -> dict[str, object]:
        st = stats(0, 0, 0, {})
        st["sinks"]["kafka_sink"]["transactions"] = {  # type: ignore[index]
            "transactional_id": "node-7-1",
            "committed": committed,
            "aborted": aborted,
            "last_abort": "commit: Broker: Request timed out" if aborted else "",
            "records_committed": committed * 250,
            "records_open": 3,
            "average_records": 250.0,
            "average_commit_seconds": 0.042,
            "last_commit_seconds": 0.05,
        }
        return st

    v = view(Sample(10.0, HEALTH, with_txns(100, 0)), Sample(12.0, HEALTH, with_txns(120, 1)))
    t = v["transactions"]["kafka_sink"]
    assert t["committed_per_second"] == 10.0
    assert (t["committed"], t["aborted"], t["transactional_id"]) == (120, 1, "node-7-1")
    console = Console(record=True, width=200)
    console.print(render(v, "http://127.0.0.1:8401"))
    text = console.export_text()
    shown = ("transactions (exactly-once)", "node-7-1", "10.0", "250.0", "42.0 ms avg", "Request timed out")
    for part in shown:
        assert part in text, part
    # At least once: no transactions part.
    plain = view(Sample(0.0, HEALTH, stats(0, 0, 0, {})), Sample(1.0, HEALTH, stats(0, 0, 0, {})))
    assert plain["transactions"] == {}
    console = Console(record=True, width=200)
    console.print(render(plain, "http://127.0.0.1:8401"))
    assert "transactions" not in console.export_text()


def kafka_stats(consumed: int) -> dict[str, object]:
    """/stats of an agent running a Kafka source (two partitions: one read, one not yet)."""
    return {
        **stats(consumed, consumed, 0, {}),
        "kafka": {
            "consumed": consumed,
            "rejected": 0,
            "rebalances": 1,
            "commit_errors": 0,
            "in_flight": 12,
            "paused": True,
            "lag": 5012,
            "partitions": {
                "logs:1": {
                    "topic": "logs",
                    "partition": 1,
                    "watermark": -1,
                    "committed": -1,
                    "in_flight": 0,
                    "high_watermark": 5000,
                    "lag": 5000,
                    "paused": True,
                },
                "logs:0": {
                    "topic": "logs",
                    "partition": 0,
                    "watermark": 990,
                    "committed": 988,
                    "in_flight": 12,
                    "high_watermark": 1000,
                    "lag": 12,
                    "paused": True,
                },
            },
        },
    }


KAFKA_HEALTH = {
    **HEALTH,
    "services": {
        **HEALTH["services"],  # type: ignore[dict-item]
        "sources": [{"name": "kafka_source", "status": "healthy", "assigned": 2, "lag": 5012}],
    },
}


def test_a_kafka_source_shows_a_row_per_partition() -> None:
    v = view(Sample(0.0, KAFKA_HEALTH, kafka_stats(1000)), Sample(2.0, KAFKA_HEALTH, kafka_stats(3000)))
    k = v["kafka"]
    assert k["consumed_per_second"] == 1000.0 and k["lag"] == 5012 and k["paused"] is True
    assert k["partitions"] == [
        {
            "topic": "logs",
            "partition": 0,
            "committed": 988,
            "high_watermark": 1000,
            "lag": 12,
            "in_flight": 12,
            "paused": True,
        },
        {
            "topic": "logs",
            "partition": 1,
            "committed": -1,
            "high_watermark": 5000,
            "lag": 5000,
            "in_flight": 0,
            "paused": True,
        },
    ]
    console = Console(record=True, width=160)
    console.print(render(v, "http://127.0.0.1:8402"))
    text = console.export_text()
    assert "kafka source  1,000.0 records/s" in text and "lag=5,012" in text
    rows = [line.split("│") for line in text.splitlines() if line.startswith("│ logs")]
    cells = [[c.strip() for c in row[1:-1]] for row in rows]
    assert cells == [
        ["logs", "0", "988", "1,000", "12", "12", "yes"],
        ["logs", "1", "-", "5,000", "5,000", "0", "yes"],
    ]


def test_no_kafka_table_without_a_kafka_source() -> None:
    # An agent without the source still has the idle "kafka" block in /stats.
    idle = {**stats(0, 0, 0, {}), "kafka": {"consumed": 0, "partitions": {}}}
    v = view(Sample(0.0, HEALTH, idle), Sample(1.0, HEALTH, idle))
    assert v["kafka"] is None
    console = Console(record=True, width=160)
    console.print(render(v, "http://127.0.0.1:8401"))
    assert "kafka source" not in console.export_text()
