"""`log-capturer bench` as CI runs it: short scenarios against the session's broker.

These check that the harness works end to end (the agent really ships every
line once, the collector accounts for them, the ceiling runs, JSON and PNG are
written), never how fast anything is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from log_capturer.devtools.generate import LineFactory

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n"


def bench(tmp_path: Path, bootstrap: str, *args: str) -> dict[str, Any]:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "log_capturer",
            "bench",
            "--bootstrap",
            bootstrap,
            "--json",
            str(out),
            "--out-dir",
            str(tmp_path / "runs"),
            "--stall-timeout",
            "60",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    assert proc.returncode == 0, f"bench exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-6000:]}"
    result: dict[str, Any] = orjson.loads(out.read_bytes())
    assert Path(result["files"]["chart"]).read_bytes()[:8] == PNG
    assert "targets" in proc.stderr  # the verdict table was printed
    return result


def test_baseline_smoke_with_the_kcat_ceiling(tmp_path: Path, bootstrap: str) -> None:
    r = bench(tmp_path, bootstrap, "--scenario", "baseline", "--duration", "5")
    res = r["results"]
    assert res["lines_expected"] == 5000
    assert (res["unique"], res["lost"], res["duplicated"], res["misrouted"]) == (5000, 0, 0, 0)
    assert res["errors"]["foreign_records"] == 0 and res["non_append_timestamps"] == 0
    # Level routing: the design document's topics got the lines of their levels.
    topics = r["topics"]
    assert res["by_topic"][topics["logs-normal-priority"]] > res["by_topic"][topics["logs-high-priority"]] > 0
    assert res["by_topic"].get(topics["logs-dlq"], 0) == 0
    assert res["throughput"] > 0 and res["rss_peak_mib"] > 0
    for kind in ("consume", "append"):
        lat = res["latency_ms"][kind]
        assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert r["agent"]["exit_code"] == 0
    assert r["generator"]["lines"] == 5000
    # Debian's kcat (librdkafka 2.0.2) talks to the Kafka 4.1 broker with acks=all, idempotence, zstd.
    ceil = r["ceiling"]
    assert ceil["tool"] == "kcat", ceil
    assert ceil["error"] == "" and ceil["delivered"] == 5000
    assert r["ratio_to_ceiling"] is not None
    assert {t["target"] for t in r["targets"]} >= {
        "throughput",
        "ceiling ratio",
        "p99 latency",
        "memory",
        "no loss",
    }
    assert r["machine"]["cores"] and r["load"]["before"]
    assert r["timeseries"]["samples"]
    # A clean run deletes its generated files and its topics; the result, config and log stay.
    assert r["cleanup"]["deleted"] is True and r["cleanup"]["topic_errors"] == {}
    assert r["cleanup"]["file_bytes"] > 5000 * 100
    run_dir = Path(r["files"]["dir"])
    assert list((run_dir / "logs").iterdir()) == []
    assert Path(r["agent"]["log"]).exists() and Path(r["agent"]["config"]).exists()
    assert not set(topics.values()) & set(_topics(bootstrap))


def test_max_smoke_with_the_python_ceiling_and_a_profile(tmp_path: Path, bootstrap: str) -> None:
    r = bench(
        tmp_path,
        bootstrap,
        "--scenario",
        "max",
        "--lines",
        "30000",
        "--format",
        "mixed",
        "--ceiling",
        "python",
        "--profile",
        "--files",
        "2",
    )
    res = r["results"]
    assert (res["unique"], res["lost"], res["duplicated"], res["misrouted"]) == (30000, 0, 0, 0)
    assert res["latency_ms"]["consume"]["p50"] is None  # read after the run: only append latency
    assert res["latency_ms"]["append"]["p50"] is not None
    # The mixed lines' stack traces are joined to their line (the java multiline preset): no
    # record without a line's seq; the ceiling sends the files line by line, trace lines too.
    assert res["errors"]["foreign_records"] == 0
    raw = sum(1 + x.count("\n") for x in LineFactory("mixed", 150).batch(0, 30000, 0).lines)
    assert raw > 30000
    ceil = r["ceiling"]
    assert ceil["tool"] == "confluent-kafka" and ceil["error"] == "" and ceil["delivered"] == raw
    prof = r["profile"]
    assert "error" not in prof, prof
    assert "by thread:" in prof["summary"] and Path(prof["folded"]).stat().st_size > 0
    verdicts = {t["target"]: t["status"] for t in r["targets"]}
    assert verdicts["throughput"] in ("met", "not met") and verdicts["p99 latency"] == "n/a"


def test_max_smoke_in_multi_process_mode(tmp_path: Path, bootstrap: str) -> None:
    r = bench(
        tmp_path,
        bootstrap,
        "--scenario",
        "max",
        "--lines",
        "20000",
        "--files",
        "4",
        "--workers",
        "2",
        "--profile",
        "--keep",
    )
    res = r["results"]
    assert (res["unique"], res["lost"], res["duplicated"], res["misrouted"]) == (20000, 0, 0, 0)
    assert r["options"]["workers"] == 2 and r["agent"]["exit_code"] == 0
    # The ceiling runs kcat on the same four files (through its standard input: -l takes one).
    ceil = r["ceiling"]
    assert (ceil["tool"], ceil["error"], ceil["delivered"]) == ("kcat", "", 20000)
    assert r["ratio_to_ceiling"] is not None
    config = yaml.safe_load(Path(r["agent"]["config"]).read_text())
    assert config["app"]["workers"] == 2
    # Memory and CPU are those of the supervisor and both workers together.
    assert res["rss_peak_mib"] > 0 and res["rss_sampled_peak_mib"] > 0 and res["agent_cpu_seconds"] > 0
    assert r["timeseries"]["samples"][-1]["lines_read"] == 20000  # the supervisor's /stats: all workers
    # --keep: the generated files and the topics stay.
    assert r["cleanup"] == {"deleted": False, "why_kept": "--keep"}
    assert len(list((Path(r["files"]["dir"]) / "logs").iterdir())) == 4
    assert set(r["topics"].values()) <= set(_topics(bootstrap))
    # py-spy followed the supervisor's children: the workers' stacks are in the profile.
    prof = r["profile"]
    assert "error" not in prof, prof
    assert "log_capturer.workers.worker --index" in Path(prof["folded"]).read_text()


@pytest.mark.parametrize("body_format", ["ndjson", "msgpack"])
def test_max_smoke_through_http_ingest(tmp_path: Path, bootstrap: str, body_format: str) -> None:
    r = bench(
        tmp_path,
        bootstrap,
        "--scenario",
        "max",
        "--lines",
        "20000",
        "--source",
        "http",
        "--http-format",
        body_format,
    )
    res = r["results"]
    assert (res["unique"], res["lost"], res["duplicated"], res["misrouted"]) == (20000, 0, 0, 0)
    assert res["errors"]["foreign_records"] == 0
    assert (r["options"]["source"], r["options"]["http_format"]) == ("http", body_format)
    info = r["generator"]["target_info"]
    assert (r["generator"]["target"], info["format"], info["requests"]) == ("http", body_format, 20)
    # Encoded before the run, sent 10 at a time (the default --in-flight).
    assert (info["prepared"], info["in_flight"], r["options"]["prepared"]) == (True, 10, True)
    assert r["ceiling"] is None and r["agent"]["exit_code"] == 0
    # Every record came through HTTP ingest with its tenant label (the partition key).
    assert res["by_topic"].get(r["topics"]["logs-dlq"], 0) == 0


def _topics(bootstrap: str) -> list[str]:
    from confluent_kafka.admin import AdminClient

    return list(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30).topics)


@pytest.mark.parametrize(("record", "compress"), [("log", False), ("fields", True)])
def test_max_smoke_through_the_forward_listener(
    tmp_path: Path, bootstrap: str, record: str, compress: bool
) -> None:
    """The generator's forward target (Forward mode, or CompressedPackedForward) into the agent's
    forward listener, every message acknowledged, every line read back once."""
    r = bench(
        tmp_path,
        bootstrap,
        "--scenario",
        "max",
        "--lines",
        "20000",
        "--source",
        "forward",
        "--http-batch",
        "2000",
        "--forward-record",
        record,
        *(["--forward-compress"] if compress else []),
    )
    res = r["results"]
    assert (res["unique"], res["lost"], res["duplicated"], res["misrouted"]) == (20000, 0, 0, 0)
    assert res["errors"]["foreign_records"] == 0
    opts = r["options"]
    assert (opts["source"], opts["forward_record"], opts["forward_compress"]) == ("forward", record, compress)
    info = r["generator"]["target_info"]
    assert (r["generator"]["target"], info["messages"], info["acked"]) == ("forward", 10, 10)
    assert (info["record"], info["compressed"]) == (record, compress)
    assert (info["prepared"], info["in_flight"], opts["in_flight"]) == (True, 10, 10)
    assert r["ceiling"] is None and r["agent"]["exit_code"] == 0
    assert res["by_topic"].get(r["topics"]["logs-dlq"], 0) == 0


def test_max_smoke_through_the_otlp_input(tmp_path: Path, bootstrap: str) -> None:
    r = bench(
        tmp_path, bootstrap, "--scenario", "max", "--lines", "20000", "--source", "otlp", "--in-flight", "4"
    )
    res = r["results"]
    assert (res["unique"], res["lost"], res["duplicated"], res["misrouted"]) == (20000, 0, 0, 0)
    assert res["errors"]["foreign_records"] == 0
    assert (r["options"]["source"], r["options"]["http_format"]) == ("otlp", "otlp")
    info = r["generator"]["target_info"]
    assert info["url"].endswith("/v1/logs") and (info["format"], info["requests"]) == ("otlp", 20)
    assert (info["prepared"], info["in_flight"], r["options"]["in_flight"]) == (True, 4, 4)
    assert r["ceiling"] is None and r["agent"]["exit_code"] == 0
    config = yaml.safe_load(Path(r["agent"]["config"]).read_text())
    assert config["otlp"]["enabled"] is True
