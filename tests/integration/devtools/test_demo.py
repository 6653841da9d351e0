"""``log-capturer demo`` run for real: it finds the session's Kafka broker running (``--kafka-workdir``,
as a user's ``log-capturer kafka up``) and starts its own VictoriaLogs, the agent and the consumer;
a line appended to a file under its logs directory is found through VictoriaLogs' query API
within seconds; ``log-capturer status`` shows the consumer's partitions; SIGINT (Ctrl-C) stops
the processes and the VictoriaLogs it started, and leaves the broker it did not start running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from log_capturer.devtools.kafka_local import LocalKafka, free_port
from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs
from tests.support import REPO, wait_until

pytestmark = pytest.mark.integration

#: Seconds between appending the line and finding it in VictoriaLogs ("within seconds").
SEARCHABLE_WITHIN = 15.0


def query(url: str, logsql: str) -> list[dict[str, Any]]:
    body = urllib.parse.urlencode({"query": logsql, "limit": 10}).encode()
    with urllib.request.urlopen(url + "/select/logsql/query", body, timeout=10) as r:
        return [orjson.loads(line) for line in r.read().splitlines() if line.strip()]


def answers(api: str) -> bool:
    try:
        with urllib.request.urlopen(api + "/health", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def test_the_demo_makes_an_appended_line_searchable_and_stops_on_ctrl_c(
    tmp_path: Path, kafka: LocalKafka, topic_prefix: str
) -> None:
    logs, state, vl_dir = tmp_path / "data" / "logs", tmp_path / "data" / "demo", tmp_path / "vl"
    out_path = tmp_path / "demo.out"
    vl = LocalVictoriaLogs(vl_dir, port=free_port())
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "log_capturer",
                "demo",
                "--logs",
                str(logs),
                "--directory",
                str(state),
                "--kafka-workdir",
                str(kafka.workdir),
                "--victorialogs-workdir",
                str(vl_dir),
                "--victorialogs-port",
                str(vl.port),
                "--topic-prefix",
                f"{topic_prefix}-",
                "--free-ports",
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "250"},
        )

    def output() -> str:
        return out_path.read_text(errors="replace")

    try:
        wait_until(lambda: "The demo runs" in output() or proc.poll() is not None, 180, "the demo to start")
        assert proc.poll() is None, output()
        assert "/select/vmui" in output() and vl.url in output()
        apis = {
            name: f"http://127.0.0.1:{yaml.safe_load((state / f'{name}.yaml').read_text())['server']['port']}"
            for name in ("agent", "consumer")
        }
        marker = f"demo-{uuid.uuid4().hex}"
        with (logs / "app.log").open("a") as f:
            f.write(f"2026-12-06 10:00:00 ERROR payment failed tenant_id=acme {marker}\n")
        appended = time.monotonic()
        found = wait_until(
            lambda: query(vl.url, f'"{marker}"'), SEARCHABLE_WITHIN, "the line in VictoriaLogs", interval=0.25
        )
        print(f"the appended line was searchable after {time.monotonic() - appended:.1f}s")
        assert len(found) == 1 and marker in found[0]["_msg"]
        assert '{job="log-capturer-consumer"' in found[0]["_stream"]
        # The consumer's partitions in `log-capturer status`: every partition of the four log
        # topics, the one the line went to committed past it, nothing left to read.
        res = subprocess.run(
            [sys.executable, "-m", "log_capturer", "status", "--api", apis["consumer"], "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        kafka_view = json.loads(res.stdout)["kafka"]
        rows = kafka_view["partitions"]
        assert {r["topic"] for r in rows} == {
            f"{topic_prefix}-{t}"
            for t in ("logs", "logs-high-priority", "logs-normal-priority", "logs-low-priority")
        }
        assert len(rows) == 4 + 6 + 3 + 2
        assert kafka_view["consumed"] == 1
        assert all(r["lag"] == 0 and r["paused"] is False for r in rows), rows
        (read,) = [r for r in rows if r["high_watermark"]]
        assert read["topic"] == f"{topic_prefix}-logs-high-priority" and read["committed"] == 1
        table = subprocess.run(
            [sys.executable, "-m", "log_capturer", "status", "--api", apis["consumer"]],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},
            check=False,
        )
        assert "kafka source" in table.stdout and "high watermark" in table.stdout, table.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0, output()
    assert "stopping the agent" in output() and "stopping the consumer" in output()
    # Everything it started exited; the broker it found running still runs.
    assert not any(answers(api) for api in apis.values())
    assert vl.pid() is None and not vl.answers()
    assert kafka.status()["state"] == "up"
