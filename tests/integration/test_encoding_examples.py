"""The example configurations of ``configs/encodings/`` for the local file, Loki and Elasticsearch
sinks, run as they are by the real agent (only the ports, the directories and the servers'
addresses point at this test's), their records read back."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.opensearch_local import LocalOpenSearch
from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs
from tests.conformance.harness_elasticsearch import read_index
from tests.integration.sinks.loki.test_encodings import parse_logfmt
from tests.support import AgentProcess, wait_until, write_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LINES = [
    '2026-01-01 00:00:00 ERROR payment failed {"tenant_id": "acme"}',
    "2026-01-01 00:00:01 INFO  started é",
    "plain line, no level",
]


def example(name: str, tmp: Path) -> dict[str, Any]:
    """The example, with this test's ports and directories."""
    cfg: dict[str, Any] = yaml.safe_load((REPO / "configs" / "encodings" / name).read_text())
    cfg["server"] = {"host": "127.0.0.1", "port": free_port()}
    cfg["metrics"] = {"host": "127.0.0.1", "port": free_port()}
    cfg["files_config"]["watch_directories"] = [str(tmp / "logs")]
    cfg["files_config"].update(rescan_interval="500ms", poll_interval="50ms")
    cfg["dispatcher"]["dlq_config"]["directory"] = str(tmp / "dlq")
    cfg["positions"]["directory"] = str(tmp / "positions")
    (tmp / "logs").mkdir()
    return cfg


def run(tmp: Path, cfg: dict[str, Any], arrived: Any, what: str) -> None:
    agent = AgentProcess(write_config(tmp / "config.yaml", cfg), tmp / "agent.log").start()
    try:
        (tmp / "logs" / "app.log").write_text("".join(line + "\n" for line in LINES))
        wait_until(arrived, 90, what)
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()


def test_local_file_logfmt(tmp_path: Path) -> None:
    cfg = example("local-file-logfmt.yaml", tmp_path)
    out = tmp_path / "output"
    cfg["sinks"]["local_file"]["directory"] = str(out)

    def lines() -> list[bytes]:
        return (
            [x for p in sorted(out.glob("logs-*.log")) for x in p.read_bytes().splitlines()]
            if out.exists()
            else []
        )

    run(tmp_path, cfg, lambda: len(lines()) == len(LINES), "every line in the files")
    names = sorted(p.name.split("-")[1] for p in out.glob("logs-*.log"))
    assert names == ["error", "info", "unknown"]
    docs = sorted((parse_logfmt(x.decode()) for x in lines()), key=lambda d: LINES.index(d["message"]))
    assert [d["message"] for d in docs] == LINES
    assert [d.get("level") for d in docs] == ["error", "info", None]
    assert all(set(d) <= {"timestamp", "level", "message", "fields.tenant_id"} for d in docs), docs


def test_loki_raw(tmp_path: Path, victorialogs: LocalVictoriaLogs) -> None:
    cfg = example("loki-raw.yaml", tmp_path)
    job = f"ex-{uuid.uuid4().hex[:10]}"
    cfg["sinks"]["loki"].update(url=victorialogs.url, default_labels={"job": job})
    run(
        tmp_path,
        cfg,
        lambda: victorialogs.count(f'{{job="{job}"}}') == len(LINES),
        "every entry in VictoriaLogs",
    )
    rows = victorialogs.query(f'{{job="{job}"}}')
    assert sorted(r["_msg"] for r in rows) == sorted(LINES)
    assert {r["source_id"] for r in rows} == {str(tmp_path / "logs" / "app.log")}  # structured metadata


def test_elasticsearch_raw(tmp_path: Path, opensearch: LocalOpenSearch) -> None:
    cfg = example("elasticsearch-raw.yaml", tmp_path)
    index = f"ex-{uuid.uuid4().hex[:10]}"
    cfg["sinks"]["elasticsearch"].update(endpoints=[opensearch.url], index=index)
    try:
        run(tmp_path, cfg, lambda: len(read_index(opensearch, index)) == len(LINES), "every document")
        docs = read_index(opensearch, index)
    finally:
        opensearch.request("DELETE", f"/{index}")
    assert sorted(d["message"] for d in docs) == sorted(LINES)
    assert all(set(d) == {"@timestamp", "message", "_id"} for d in docs), docs
