"""Alert rules and the Grafana dashboard, checked with Debian's promtool (fails, never skips, without it)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from log_capturer.devtools.prometheus_local import promtool
from tests.support import REPO

PROM = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "log-capturer.json"


def ok(args: list[str], cwd: Path | None = None) -> str:
    res = promtool(*args, cwd=cwd)
    assert res.returncode == 0, f"promtool {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [r for g in data["groups"] for r in g["rules"]]


def test_alert_rules_pass_promtool_check() -> None:
    out = ok(["check", "rules", str(PROM / "alerts.yml")])
    assert f"SUCCESS: {len(rules())} rules found" in out


def test_alert_rule_unit_tests_pass() -> None:
    out = ok(["test", "rules", "alerts.test.yml"], cwd=PROM)
    assert "SUCCESS" in out


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load((PROM / "alerts.test.yml").read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case.get("alert_rule_test", [])}
    assert {r["alert"] for r in rules()} == tested


def test_the_alerts_the_issue_asks_for() -> None:
    by_name = {r["alert"]: r["expr"] for r in rules()}
    assert (
        "> 0.8" in by_name["LogCapturerQueueHigh"]
        and "dispatcher_queue_utilization" in by_name["LogCapturerQueueHigh"]
    )
    assert "kafka_queue_utilization" in by_name["LogCapturerKafkaQueueHigh"]
    assert "kafka_circuit_breaker_state" in by_name["LogCapturerCircuitBreakerOpen"]
    assert "== 2" in by_name["LogCapturerCircuitBreakerOpen"]
    assert "kafka_dlq_messages_total" in by_name["LogCapturerDLQGrowing"]
    assert "kafka_producer_errors_total" in by_name["LogCapturerProducerErrors"]
    assert "kafka_messages_produced_total" in by_name["LogCapturerNoDataShipped"]


def test_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The rule tests have teeth: the queue alert at 95 % instead of 80 % makes them fail."""
    text = (PROM / "alerts.yml").read_text()
    changed = text.replace("(dispatcher_queue_utilization) > 0.8", "(dispatcher_queue_utilization) > 0.95")
    assert changed != text
    (tmp_path / "alerts.yml").write_text(changed)
    (tmp_path / "alerts.test.yml").write_text((PROM / "alerts.test.yml").read_text())
    res = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert res.returncode != 0
    assert "LogCapturerQueueHigh" in res.stdout + res.stderr


def test_compose_prometheus_config_passes_promtool() -> None:
    out = ok(["check", "config", str(PROM / "prometheus.yml")])
    assert "SUCCESS: 2 rule files found" in out
    assert yaml.safe_load((PROM / "prometheus.yml").read_text())["rule_files"] == [
        "alerts.yml",
        "recording.yml",
    ]


def test_recording_rules_pass_promtool_check_and_are_unit_tested() -> None:
    """recording.yml gives each histogram a series of its own name (the rate of its buckets), which
    the design document's ``histogram_quantile(0.95, kafka_batch_size_messages)`` reads."""
    recorded = [
        r["record"]
        for g in yaml.safe_load((PROM / "recording.yml").read_text())["groups"]
        for r in g["rules"]
    ]
    assert recorded == [
        "kafka_batch_size_messages",
        "kafka_batch_send_duration_seconds",
        "kafka_message_size_bytes",
    ]
    assert f"SUCCESS: {len(recorded)} rules found" in ok(["check", "rules", str(PROM / "recording.yml")])
    tests = yaml.safe_load((PROM / "alerts.test.yml").read_text())
    assert "recording.yml" in tests["rule_files"]
    tested = {t["expr"] for case in tests["tests"] for t in case.get("promql_expr_test", [])}
    assert tested == {f"histogram_quantile(0.95, {name})" for name in recorded}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_exprs() -> dict[str, list[str]]:
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard()["panels"]}


def test_dashboard_has_the_design_documents_panels() -> None:
    exprs = dashboard_exprs()
    want = {
        "Throughput by topic": 'sum by (topic) (rate(kafka_messages_produced_total{status="success"}[1m]))',
        "Error rate": "sum by (error_type) (rate(kafka_producer_errors_total[1m]))",
        "Queue utilization": 'kafka_queue_utilization{sink_name="kafka"} * 100',  # the document's, as written
        "DLQ rate": "sum by (reason) (rate(kafka_dlq_messages_total[5m]))",
        "Circuit breaker state": "kafka_circuit_breaker_state",
        "Batch send latency p95": "histogram_quantile(0.95, sum by (le, topic) "
        "(rate(kafka_batch_send_duration_seconds_bucket[5m])))",
    }
    for title, expr in want.items():
        assert title in exprs, f"panel {title!r} missing"
        assert any(expr in e for e in exprs[title]), (title, exprs[title])


def test_dashboard_is_consistent() -> None:
    d = dashboard()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    uid = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ][0]["uid"]
    for p in d["panels"]:
        assert p["datasource"]["uid"] == uid, p["title"]
        assert all(t["datasource"]["uid"] == uid for t in p["targets"]), p["title"]
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every panel query parses: promtool checks them as recording rules."""
    records = []
    for i, p in enumerate(dashboard()["panels"]):
        for t in p["targets"]:
            records.append({"record": f"dashboard:panel_{i}_{t['refId']}", "expr": t["expr"]})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    out = ok(["check", "rules", str(path)])
    assert f"SUCCESS: {len(records)} rules found" in out


def test_promql_check_catches_a_broken_query(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "histogram_quantile(0.95,"}]}]}
        )
    )
    assert promtool("check", "rules", str(path)).returncode != 0


PROMQL_WORDS = {
    "sum",
    "max",
    "count",
    "topk",
    "rate",
    "increase",
    "histogram_quantile",
    "by",
    "unless",
    "and",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (label matchers, groupings and numbers left out)."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\bby\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    return {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if w not in PROMQL_WORDS}


def exported_names() -> set[str]:
    """Sample names the agent's registry can export, from each family's type."""
    from prometheus_client import CollectorRegistry

    from log_capturer.observability.health import ComponentHealthCollector
    from log_capturer.observability.lag import FileLagCollector
    from log_capturer.observability.metrics import Metrics

    m = Metrics(CollectorRegistry())
    m.registry.register(ComponentHealthCollector(lambda: []))
    m.registry.register(FileLagCollector(lambda: [], 10))
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    names = {"up"}
    for family in m.registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, [""]))
    return names


def test_dashboard_and_alerts_read_only_exported_metrics() -> None:
    exprs = [e for es in dashboard_exprs().values() for e in es] + [r["expr"] for r in rules()]
    used = set().union(*(metric_names(e) for e in exprs))
    assert "kafka_messages_produced_total" in used and "kafka_circuit_breaker_state" in used
    assert not used - exported_names(), used - exported_names()
