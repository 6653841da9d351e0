"""`log-capturer victorialogs up | status | down` against a real VictoriaLogs of its own, and the
session fixture's server read back with LogsQL."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs
from tests.support import run_cli

pytestmark = pytest.mark.integration


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, check=check, timeout=900)


def push_json(url: str, labels: dict[str, str], lines: list[str]) -> None:
    now = time.time_ns()
    body = {"streams": [{"stream": labels, "values": [[str(now + i), line] for i, line in enumerate(lines)]}]}
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status in (200, 204)


def test_up_is_idempotent_takes_loki_pushes_and_down_stops(tmp_path: Path) -> None:
    work = str(tmp_path / "vl")
    port = free_port()
    try:
        first = cli("victorialogs", "up", "--workdir", work, "--port", str(port)).stdout.strip()
        assert first == f"http://127.0.0.1:{port}/insert/loki/api/v1/push"
        assert cli("victorialogs", "up", "--workdir", work, "--port", str(port)).stdout.strip() == first
        status = json.loads(cli("victorialogs", "status", "--workdir", work).stdout)
        assert status["state"] == "up" and status["loki_push_url"] == first
        push_json(first, {"job": "cli"}, ["one", "two"])
        server = LocalVictoriaLogs(Path(work))
        assert sorted(r["_msg"] for r in server.query('{job="cli"}')) == ["one", "two"]
    finally:
        down = cli("victorialogs", "down", "--workdir", work, check=False)
    assert down.stdout.strip() == "stopped"
    after = cli("victorialogs", "status", "--workdir", work, check=False)
    assert after.returncode == 1 and json.loads(after.stdout)["state"] == "down"
    # Started again on the same data: what it took is still there.
    try:
        cli("victorialogs", "up", "--workdir", work, "--port", str(port))
        assert LocalVictoriaLogs(Path(work)).count('{job="cli"}') == 2
    finally:
        cli("victorialogs", "down", "--workdir", work, "--purge", check=False)
    assert not Path(work).exists()


def test_the_session_server_answers_logsql(victorialogs: LocalVictoriaLogs) -> None:
    push_json(victorialogs.push_url, {"job": "fixture", "n": "1"}, ["a", "b", "c"])
    assert victorialogs.count('{job="fixture"}') == 3
    rows = victorialogs.query('{job="fixture"} | sort by (_time)')
    assert [r["_msg"] for r in rows] == ["a", "b", "c"]
    assert all(r["_stream"] == '{job="fixture",n="1"}' for r in rows)
