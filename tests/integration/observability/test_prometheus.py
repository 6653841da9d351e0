"""A real Prometheus scrapes the agent while lines flow: the design document's queries answer."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from log_capturer.devtools.prometheus_local import LocalPrometheus, PrometheusError
from tests.integration.observability.conftest import LineWriter
from tests.support import REPO, AgentProcess, agent_config, create_prefixed_topics, wait_until, write_config

pytestmark = pytest.mark.integration

ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "log-capturer.json"


def start_prometheus(workdir: Path, target: str) -> LocalPrometheus:
    prom = LocalPrometheus(workdir, [target], scrape_interval="1s", rule_files=[ALERTS])
    try:
        return prom.start(timeout=60)
    except PrometheusError as exc:
        pytest.fail(f"Prometheus did not start:\n{exc}", pytrace=False)


def test_prometheus_scrapes_the_agent_while_lines_flow(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(tmp_path, bootstrap, topics)
    path = write_config(tmp_path / "config.yaml", cfg)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    target = f"127.0.0.1:{cfg['metrics']['port']}"
    prom: LocalPrometheus | None = None
    try:
        prom = start_prometheus(tmp_path / "prometheus", target)
        with LineWriter(tmp_path / "logs" / "app.log"):

            def shipping() -> list[float]:
                v = prom.values('rate(kafka_messages_produced_total{status="success"}[1m])')
                return v if v and all(x > 0 for x in v) else []

            rates = wait_until(shipping, 60, "a positive production rate in Prometheus", interval=1)
            assert len(rates) == 4  # four level topics (nothing goes to the DLQ topic)
            assert prom.values('kafka_circuit_breaker_state{sink_name="kafka"}') == [0.0]
            (up,) = [t for t in prom.active_targets() if t["scrapeUrl"].startswith(f"http://{target}")]
            assert up["health"] == "up", up
            assert prom.values("sum(rate(logs_processed_total[1m]))")[0] > 0
            assert prom.values('kafka_connection_status{sink_name="kafka"}') == [1.0]
            assert prom.values('component_health{component_name="kafka_sink"}') == [1.0]
            assert prom.values("process_resident_memory_bytes")[0] > 0

            # Every dashboard query runs against the scraped data; the flow panels have data.
            panels = json.loads(DASHBOARD.read_text())["panels"]
            results: dict[str, list[dict[str, Any]]] = {}
            for p in panels:
                for t in p["targets"]:
                    results[f"{p['title']}/{t['refId']}"] = prom.query(t["expr"])
            for key in (
                "Throughput by topic/A",
                "Queue utilization/A",
                "Queue utilization/B",
                "Circuit breaker state/A",
                "Batch send latency p95/A",
                "Lines read vs acknowledged/A",
                "Records per partition/A",
                "Component health/A",
            ):
                assert results[key], f"dashboard panel {key} shows no data"
            assert {r["metric"]["topic"] for r in results["Throughput by topic/A"]} == set(
                topics.values()
            ) - {topics["logs-dlq"], topics["log-capturer-positions"]}

            # The alert rules load and evaluate without errors; none fires on a healthy agent.
            def evaluated() -> list[dict[str, Any]]:
                rules = [r for g in prom.rule_groups() for r in g["rules"]]
                return (
                    rules if rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules) else []
                )

            rules = wait_until(evaluated, 30, "every alert rule evaluated", interval=1)
            assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
            assert {r["name"] for r in rules if r["state"] != "inactive"} <= {"LogCapturerProducerErrors"}
            assert not [r for r in rules if r["state"] == "firing"]
        assert agent.stop(signal.SIGTERM) == 0
    finally:
        if prom is not None:
            prom.stop()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()


def test_prometheus_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken-rules.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: rate(\n")
    prom = LocalPrometheus(tmp_path / "prometheus", ["127.0.0.1:1"], rule_files=[broken])
    with pytest.raises(PrometheusError) as info:
        prom.start(timeout=30)
    text = str(info.value)
    assert "exited with code" in text and "broken-rules.yml" in text  # Prometheus's own log


def test_prometheus_refuses_a_busy_port(tmp_path: Path) -> None:
    busy = LocalPrometheus(tmp_path / "a", ["127.0.0.1:1"]).start()
    try:
        with pytest.raises(PrometheusError, match="already in use"):
            LocalPrometheus(tmp_path / "b", ["127.0.0.1:1"], port=busy.port).start()
    finally:
        busy.stop()
