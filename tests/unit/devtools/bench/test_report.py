"""Target verdicts, percentiles and the chart of a benchmark result (no network)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from log_capturer.devtools.bench import report


def result(scenario: str = "max", rate: float = 0, **over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "started_at": "2026-11-25T07:00:00+00:00",
        "machine": {"cores": 2},
        "load": {"before": [0.1, 0.2, 0.3], "after": [1.0, 0.5, 0.4]},
        "options": {
            "scenario": scenario,
            "rate": rate,
            "acks": -1,
            "compression": "zstd",
            "line_bytes": 150,
            "format": "json",
            "bootstrap": "127.0.0.1:9",
        },
        "agent": {"exit_code": 0},
        "results": {
            "lines_expected": 1000,
            "unique": 1000,
            "lost": 0,
            "duplicated": 0,
            "misrouted": 0,
            "throughput": 350_000.0,
            "latency_ms": {
                "consume": {"p50": 5.0, "p95": 20.0, "p99": 40.0},
                "append": {"p50": 4.0, "p95": 19.0, "p99": 39.0},
            },
            "queue_peak": {"dispatcher": 0.5, "producer": 0.2},
            "rss_peak_mib": 150.0,
            "agent_cpu_seconds": 3.0,
            "cpu_us_per_line": 3.0,
            "errors": {"errors_total": 0},
            "error_rate": 0.0,
        },
        "ceiling": {"tool": "kcat", "version": "1.7.1", "throughput": 600_000.0, "error": ""},
        "ratio_to_ceiling": 350 / 600,
    }
    for k, v in over.items():
        r["results"][k] = v
    return r


def by_target(r: dict[str, Any]) -> dict[str, report.Verdict]:
    return {v.target: v for v in report.verdicts(r)}


def test_max_run_meeting_every_target() -> None:
    v = by_target(result())
    assert v["throughput"].status == "met"
    assert v["ceiling ratio"].status == "met"
    assert v["memory"].status == "met"
    assert v["p99 latency"].status == "n/a"  # only the 20,000 lines/s run judges latency
    assert v["no loss"].status == "met"


def test_max_run_missing_targets() -> None:
    r = result(throughput=100_000.0, rss_peak_mib=300.0, lost=3)
    r["ratio_to_ceiling"] = 0.2
    v = by_target(r)
    assert [v[t].status for t in ("throughput", "ceiling ratio", "memory", "no loss")] == ["not met"] * 4


def test_peak_run_judges_latency_and_the_design_document() -> None:
    r = result("peak", 20_000)
    v = by_target(r)
    assert v["p99 latency"].status == "met"
    assert v["throughput"].status == "n/a"
    assert v["design: latency p95"].status == "met"
    slow = copy.deepcopy(r)
    slow["results"]["latency_ms"]["consume"] = {"p50": 60.0, "p95": 600.0, "p99": 900.0}
    v = by_target(slow)
    assert v["p99 latency"].status == "not met"
    assert v["design: latency p95"].status == "not met"


def test_other_conditions_make_targets_not_applicable() -> None:
    r = result()
    r["options"]["acks"] = 1
    v = by_target(r)
    assert v["throughput"].status == "n/a"
    assert "acks=1" in v["throughput"].note


def test_baseline_design_expectations() -> None:
    r = result("baseline", 1000, queue_peak={"dispatcher": 0.1, "producer": 0.5})
    v = by_target(r)
    assert v["design: Kafka queue"].status == "not met"
    assert v["design: error rate"].status == "met"


def test_percentiles() -> None:
    p = report.percentiles([float(x) for x in range(1, 101)])
    assert p["p50"] == pytest.approx(50.5)
    assert p["p99"] == pytest.approx(99.01)
    assert p["max"] == 100.0
    assert report.percentiles([])["p99"] is None


def test_chart_is_a_png(tmp_path: Path) -> None:
    r = result("peak", 20_000)
    series = {
        "throughput_t": [0.0, 1.0, 2.0],
        "throughput": [19_000, 20_000, 20_100],
        "latency_t": [0.0, 1.0, 2.0],
        "latency_p50": [5.0, 6.0, 5.5],
        "latency_p99": [30.0, 45.0, 32.0],
        "latency_kind": "emit -> consumed",
        "sample_t": [0.5, 1.0, 1.5],
        "rss_mib": [60.0, 70.0, 72.0],
        "dispatcher_util": [0.0, 0.1, 0.0],
        "producer_util": [0.0, 0.2, 0.1],
    }
    out = tmp_path / "c.png"
    report.write_chart(r, series, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_shows_the_cpu_of_each_thread() -> None:
    from rich.console import Console

    def text(r: dict[str, Any]) -> str:
        r["targets"] = report.verdict_dicts(report.verdicts(r))
        console = Console(record=True, width=200)
        report.print_report(r, console)
        return console.export_text()

    shown = text(result(cpu_us_per_line_by_thread={"rdk:broker": 1.25, "dispatch": 0.9, "file-source": 0.4}))
    assert "rdk:broker 1.25, dispatch 0.90, file-source 0.40 us/line" in shown
    assert "CPU by thread" not in text(result())  # a result of an earlier version has no such row
