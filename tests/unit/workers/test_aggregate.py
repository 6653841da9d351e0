"""The whole agent's /health, /stats, /positions and /metrics made from its workers' answers."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from log_capturer.workers.aggregate import merge_health, merge_metrics, merge_positions, merge_stats


def health(status: str, sink_status: str = "healthy", queue: str = "healthy") -> dict[str, Any]:
    return {
        "status": status,
        "version": "0.1.0",
        "app": {"name": "x"},
        "services": {
            "sinks": [{"name": "kafka_sink", "status": sink_status, "message": "OK", "last_check": "t"}],
            "sources": [{"name": "file_source", "status": "healthy", "files": 3}],
        },
        "checks": {"queue": {"status": queue, "utilization": 0.5}},
    }


def process(index: int, state: str = "running", restarts: int = 0) -> dict[str, Any]:
    return {"index": index, "pid": 100 + index, "state": state, "restarts": restarts}


def test_health_is_the_worst_of_the_workers_and_lists_every_sink() -> None:
    h = merge_health([(0, health("healthy")), (1, health("healthy"))], [process(0), process(1)])
    assert h["status"] == "healthy" and h["app"] == {"name": "x"}
    assert [(s["name"], s["worker"]) for s in h["services"]["sinks"]] == [
        ("kafka_sink", 0),
        ("kafka_sink", 1),
    ]
    assert h["checks"]["workers"]["status"] == "healthy" and h["checks"]["workers"]["count"] == 2
    h = merge_health(
        [(0, health("healthy")), (1, health("degraded", queue="degraded"))], [process(0), process(1)]
    )
    assert h["status"] == "degraded"
    assert h["checks"]["queue"]["status"] == "degraded"
    assert h["checks"]["queue"]["workers"]["1"]["status"] == "degraded"
    h = merge_health(
        [(0, health("unhealthy", sink_status="unhealthy")), (1, health("healthy"))], [process(0), process(1)]
    )
    assert h["status"] == "unhealthy"


def test_a_worker_down_makes_the_agent_degraded_and_all_down_unhealthy() -> None:
    h = merge_health([(0, health("healthy")), (1, None)], [process(0), process(1, "restarting", restarts=2)])
    assert h["status"] == "degraded"
    w = h["checks"]["workers"]
    assert (w["running"], w["restarts"]) == (1, 2) and "1" in w["message"]
    h = merge_health([(0, None), (1, None)], [process(0, "restarting"), process(1, "starting")])
    assert h["status"] == "unhealthy" and h["services"]["sinks"] == []


def stats(lines: int, util: float, ratio: float, error: str = "") -> dict[str, Any]:
    return {
        "pid": 1,
        "uptime_seconds": 5.0,
        "dispatcher": {"lines_in": lines, "queue_capacity": 100, "queue_utilization": util},
        "sinks": {
            "kafka_sink": {
                "delivered": lines,
                "circuit_breaker": {"state": "closed", "failure_threshold": 10},
                "backpressure": {"peak_utilization": util},
                "compression_ratio": {"logs": ratio},
                "last_error": error,
            }
        },
        "files": {"lag_bytes": {f"/f{lines}.log": 3}, "open_files": 2},
    }


def test_stats_sum_counts_and_keep_the_highest_utilization() -> None:
    s = merge_stats([(0, stats(10, 0.2, 4.0)), (1, stats(30, 0.7, 6.0, "boom"))], {"pid": 9})
    assert s["pid"] == 9
    assert s["dispatcher"] == {"lines_in": 40, "queue_capacity": 200, "queue_utilization": 0.7}
    k = s["sinks"]["kafka_sink"]
    assert k["delivered"] == 40 and k["last_error"] == "boom"
    assert k["circuit_breaker"] == {"state": "closed", "failure_threshold": 10}
    assert k["backpressure"]["peak_utilization"] == 0.7 and k["compression_ratio"]["logs"] == 5.0
    assert s["files"] == {"lag_bytes": {"/f10.log": 3, "/f30.log": 3}, "open_files": 4}
    assert [w["index"] for w in s["workers"]] == [0, 1] and s["workers"][1]["stats"]["pid"] == 1
    s = merge_stats([(0, stats(10, 0.2, 4.0)), (1, None)], {})
    assert s["dispatcher"]["lines_in"] == 10 and s["workers"][1]["stats"] is None


def test_positions_are_the_union_with_the_worker_of_each_file() -> None:
    p = merge_positions(
        [
            (0, {"files": {"/a": {"offset": 1}}, "containers": {}}),
            (1, {"files": {"/b": {}}, "containers": {"c": {}}}),
        ]
    )
    assert set(p["files"]) == {"/a", "/b"} and set(p["containers"]) == {"c"}
    assert p["workers"] == {
        "0": {"files": ["/a"], "containers": []},
        "1": {"files": ["/b"], "containers": ["c"]},
    }


def worker_metrics(lines: int) -> str:
    r = CollectorRegistry()
    c = Counter("logs_sent", "Lines sent.", ["sink_type", "status"], registry=r)
    c.labels("kafka", "success").inc(lines)
    Gauge("files_monitored", "Files.", registry=r).set(3)
    h = Histogram("kafka_batch_size_messages", "Batch sizes.", ["topic"], buckets=(1, 10), registry=r)
    h.labels("logs").observe(lines)
    return generate_latest(r).decode()


def test_metrics_carry_a_worker_label_and_each_family_appears_once() -> None:
    own = Gauge("worker_up", "Up.", ["worker"], registry=(r := CollectorRegistry()))
    own.labels("0").set(1)
    text = merge_metrics([(0, worker_metrics(5)), (1, worker_metrics(7))], generate_latest(r).decode())
    assert text.count("# TYPE logs_sent_total counter") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    sent = {s.labels["worker"]: s.value for s in families["logs_sent"].samples if s.name == "logs_sent_total"}
    assert sent == {"0": 5.0, "1": 7.0}
    gauges = [(s.labels, s.value) for s in families["files_monitored"].samples]
    assert gauges == [({"worker": "0"}, 3.0), ({"worker": "1"}, 3.0)]
    counts = [s for s in families["kafka_batch_size_messages"].samples if s.name.endswith("_count")]
    assert [(s.labels["worker"], s.labels["topic"]) for s in counts] == [("0", "logs"), ("1", "logs")]
    assert [s.labels for s in families["worker_up"].samples] == [{"worker": "0"}]


def test_a_running_worker_that_does_not_answer_makes_the_agent_degraded() -> None:
    h = merge_health([(0, health("healthy")), (1, None)], [process(0), process(1)])
    assert h["status"] == "degraded"
    assert h["checks"]["workers"]["running"] == 1 and "1 did not answer" in h["checks"]["workers"]["message"]


def test_exactly_once_transactions_sum_counts_and_average_the_averages() -> None:
    def txns(tid: str, committed: int, avg: float, last: float) -> dict[str, Any]:
        t = {
            "transactional_id": tid,
            "committed": committed,
            "aborted": 1,
            "records_committed": committed * 10,
            "average_records": 10.0,
            "average_commit_seconds": avg,
            "last_commit_seconds": last,
        }
        return {"sinks": {"kafka_sink": {"transactions": t}}}

    s = merge_stats([(0, txns("a-0", 5, 0.02, 0.03)), (1, txns("a-1", 7, 0.04, 0.01))], {})
    t = s["sinks"]["kafka_sink"]["transactions"]
    assert t["transactional_id"] == "a-0; a-1"
    assert (t["committed"], t["aborted"], t["records_committed"]) == (12, 2, 120)
    assert t["average_records"] == 10.0 and t["average_commit_seconds"] == 0.03
    assert t["last_commit_seconds"] == 0.03
