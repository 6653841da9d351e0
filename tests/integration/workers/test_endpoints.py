"""The agent's ports served by the supervisor while two workers run: /health, /stats, /metrics,
/positions, HTTP ingest and the DLQ endpoints."""

from __future__ import annotations

import gzip
import signal
import socket
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from log_capturer.devtools.kafka_local import free_port
from tests.integration.workers.conftest import ROUTED, files_for_workers, write_lines
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

LINES = 6000


def post(
    url: str, body: bytes = b"", content_type: str = "application/json", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def test_health_stats_metrics_positions_ingest_and_dlq_through_the_supervisor(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    cfg = agent_config(tmp_path, bootstrap, topics, app={"workers": 2})
    files = files_for_workers(tmp_path / "logs", 2, 1)
    for seed, f in enumerate(files):
        write_lines([f], LINES // 2, seed=seed)
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    try:
        consume_all(bootstrap, [topics[t] for t in ROUTED], expected=LINES)
        wait_until(lambda: agent.get("/stats")["files"]["in_flight_lines"] == 0, 60, "acknowledgements")

        # /health: healthy, every worker's Kafka sink listed (the design document's jq query works).
        with urllib.request.urlopen(agent.api + "/health", timeout=10) as r:
            assert r.status == 200
            health = orjson.loads(r.read())
        assert health["status"] == "healthy"
        assert health["version"] == health["app"]["version"] == version("log-capturer")
        sinks = [s for s in health["services"]["sinks"] if "kafka" in s["name"]]
        assert [(s["worker"], s["status"]) for s in sinks] == [(0, "healthy"), (1, "healthy")]
        workers = health["checks"]["workers"]
        assert (workers["status"], workers["count"], workers["running"]) == ("healthy", 2, 2)
        pids = [w["pid"] for w in workers["workers"]]
        assert all(isinstance(p, int) for p in pids) and len(set(pids)) == 2
        assert health["checks"]["queue"]["status"] == "healthy" and set(
            health["checks"]["queue"]["workers"]
        ) == {
            "0",
            "1",
        }
        # Worker 0 runs HTTP ingest (and only worker 0).
        ingest = [s["worker"] for s in health["services"]["sources"] if s["name"] == "http_ingest"]
        assert ingest == [0]

        # /stats: the whole agent at the top, each worker's own below; the sums add up.
        stats = agent.get("/stats")
        per = [w["stats"] for w in stats["workers"]]
        assert [w["pid"] for w in stats["workers"]] == pids
        assert stats["files"]["lines_read"] == sum(p["files"]["lines_read"] for p in per) == LINES
        assert all(p["files"]["lines_read"] > 0 for p in per)
        delivered = stats["sinks"]["kafka_sink"]["delivered"]
        assert delivered == sum(p["sinks"]["kafka_sink"]["delivered"] for p in per) == LINES
        assert stats["dispatcher"]["queue_capacity"] == cfg_queue(cfg)

        # /positions: every file once, with the worker that follows it.
        positions = agent.get("/positions")
        assert set(positions["files"]) == {str(f) for f in files}
        assert [positions["workers"][w]["files"] for w in ("0", "1")] == [[str(files[0])], [str(files[1])]]

        # /metrics: each worker's samples with a worker label, each family once, valid exposition.
        text = agent.metrics()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert text.count("# TYPE logs_sent_total counter") == 1
        sent = {
            s.labels["worker"]: s.value
            for s in families["logs_sent"].samples
            if s.name == "logs_sent_total" and s.labels.get("status") == "success"
        }
        assert set(sent) == {"0", "1"} and sum(sent.values()) == LINES
        up = {s.labels["worker"]: s.value for s in families["worker_up"].samples}
        assert up == {"0": 1.0, "1": 1.0}
        types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
        assert len(types) == len(set(types)), "a metric family appears twice"
        with urllib.request.urlopen(agent.metrics_url.rsplit("/", 1)[0] + "/health", timeout=5) as r:
            assert r.read() == b"OK"

        # HTTP ingest through the supervisor, answered once acknowledged by worker 0's sink.
        code, body = post(
            agent.api + "/api/v1/logs", orjson.dumps({"message": "via supervisor", "level": "error"})
        )
        assert (code, body["status"]) == (200, "accepted")
        code, body = post(agent.api + "/api/v1/logs", b"{not json")
        assert code == 400
        # A gzip msgpack body (Fluent Bit's http output with compress gzip) arrives whole.
        req = urllib.request.Request(
            agent.api + "/api/v1/logs",
            data=gzip.compress(msgpack.packb({"log": "gzip via supervisor", "level": "error"})),
            method="POST",
            headers={"Content-Type": "application/msgpack", "Content-Encoding": "gzip"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert (r.status, orjson.loads(r.read())["accepted"]) == (200, 1)
        code, body = post(agent.api + "/api/v1/logs", b"not gzip", headers={"Content-Encoding": "gzip"})
        assert code == 400 and "the body cannot be read" in body["error"], body
        high = consume_all(bootstrap, [topics["logs-high-priority"]], expected=2)
        api = sorted(r.json()["message"] for r in high if r.json()["source_type"] == "api")
        assert api == ["gzip via supervisor", "via supervisor"]

        # The DLQ endpoints of worker 0 (one store for all workers).
        dlq = agent.get("/dlq/stats")
        assert dlq["enabled"] is True and dlq["kafka_topic"]["sent_since_start"] == 0
        code, body = post(agent.api + "/dlq/reprocess?all=true")
        assert code in (200, 409), body
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()


def cfg_queue(cfg: dict[str, Any]) -> int:
    """The dispatcher queue of the whole agent: its configured size (split between the workers)."""
    from log_capturer.config.schema import DispatcherConfig

    return int(cfg["dispatcher"].get("queue_size", DispatcherConfig().queue_size))


def test_a_worker_that_cannot_start_stops_the_agent_with_exit_code_2(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    port = free_port()
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        app={"workers": 2},
        syslog={"enabled": True, "udp": {"enabled": False}, "tcp": {"host": "127.0.0.1", "port": port}},
    )
    path = write_config(tmp_path / "config.yaml", cfg)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        agent = AgentProcess(path, tmp_path / "agent.log").start(wait=False)
        assert agent.proc is not None
        code = agent.proc.wait(120)
    log = agent.log()
    assert code == 2, log
    assert "cannot listen for syslog" in log and "worker 0 exited at start-up" in log
