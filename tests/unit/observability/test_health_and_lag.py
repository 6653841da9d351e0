from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from log_capturer.observability.health import ComponentHealthCollector, queue_check, worst
from log_capturer.observability.lag import FileLagCollector, file_lags


def test_worst_status() -> None:
    assert worst([]) == "healthy"
    assert worst(["healthy", "degraded"]) == "degraded"
    assert worst(["degraded", "unhealthy", "healthy"]) == "unhealthy"
    assert worst(["healthy", "on fire"]) == "unhealthy"


def test_queue_check() -> None:
    assert queue_check(0.5, 50, 100)["status"] == "healthy"
    c = queue_check(0.95, 95, 100)
    assert c == {"status": "degraded", "utilization": 0.95, "size": 95, "capacity": 100, "degraded_at": 0.9}


def test_component_health_values() -> None:
    r = CollectorRegistry()
    r.register(
        ComponentHealthCollector(
            lambda: [
                ("sink", "kafka_sink", "healthy"),
                ("check", "queue", "degraded"),
                ("sink", "b", "unhealthy"),
            ]
        )
    )
    assert (
        r.get_sample_value("component_health", {"component_type": "sink", "component_name": "kafka_sink"})
        == 1
    )
    assert (
        r.get_sample_value("component_health", {"component_type": "check", "component_name": "queue"}) == 0.5
    )
    assert r.get_sample_value("component_health", {"component_type": "sink", "component_name": "b"}) == 0


@dataclass
class Cp:
    committed: int


@dataclass
class Origin:
    source_type: str


@dataclass
class Followed:
    path: str
    size: int
    checkpoint: Cp
    origin: Origin


def test_file_lag_is_capped_to_the_largest_and_summed_over_all() -> None:
    files = [Followed(f"/var/log/f{i}.log", 1000, Cp(1000 - i * 10), Origin("file")) for i in range(6)]
    files.append(Followed("/var/log/pods/x/0.log", 500, Cp(100), Origin("kubernetes")))
    files.append(Followed("/var/log/ahead.log", 10, Cp(20), Origin("file")))  # truncated: never negative
    lags = file_lags(files)
    r = CollectorRegistry()
    r.register(FileLagCollector(lambda: lags, 3))
    exported = {
        s.labels["path"]: s.value for f in r.collect() if f.name == "file_lag_bytes" for s in f.samples
    }
    assert exported == {"/var/log/pods/x/0.log": 400, "/var/log/f5.log": 50, "/var/log/f4.log": 40}
    assert r.get_sample_value("files_lag_bytes") == 400 + sum(i * 10 for i in range(6))
    assert r.get_sample_value("files_lagging") == 6
    assert r.get_sample_value(
        "file_lag_bytes", {"source_type": "kubernetes", "path": "/var/log/pods/x/0.log"}
    )


def test_stall_detector() -> None:
    from log_capturer.observability.health import StallDetector

    patient = StallDetector(3600)
    assert patient.check("k", 5, 10)["status"] == "healthy"
    assert patient.check("k", 5, 10)["status"] == "healthy"
    strict = StallDetector(0)
    c = strict.check("k", 5, 10)
    assert c["status"] == "degraded" and "5 lines wait" in c["message"]
    assert strict.check("k", 0, 10)["status"] == "healthy"  # nothing waits: never stalled
