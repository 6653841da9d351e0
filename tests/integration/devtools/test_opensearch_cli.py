"""`log-capturer opensearch up | status | down` on the session's real OpenSearch node (one node of
about 1 GB per test session: these tests drive that one through the command line)."""

from __future__ import annotations

import json
import subprocess

import pytest

from log_capturer.devtools.opensearch_local import LocalOpenSearch
from tests.support import run_cli

pytestmark = pytest.mark.integration


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, check=check, timeout=240)


def test_up_is_idempotent_down_stops_and_up_keeps_the_data(opensearch: LocalOpenSearch) -> None:
    work = str(opensearch.workdir)
    url = opensearch.url
    pid = opensearch.pid()
    assert pid is not None
    assert url.startswith("http://127.0.0.1:")

    # Running already: up answers with its URL and starts nothing.
    assert cli("opensearch", "up", "--workdir", work, "--port", "0").stdout.strip() == url
    assert opensearch.pid() == pid
    status = json.loads(cli("opensearch", "status", "--workdir", work).stdout)
    assert status["state"] == "up" and status["url"] == url and status["pid"] == pid

    code, body = opensearch.request("PUT", "/cli-keeps/_doc/one?refresh=true", {"message": "kept"})
    assert code in (200, 201), body

    assert cli("opensearch", "down", "--workdir", work).stdout.strip() == "stopped"
    down = cli("opensearch", "status", "--workdir", work, check=False)
    assert down.returncode == 1 and json.loads(down.stdout)["state"] == "down"
    assert cli("opensearch", "down", "--workdir", work).stdout.strip() == "not running"

    # Started again on the same port, with the same data.
    assert cli("opensearch", "up", "--workdir", work).stdout.strip() == url
    code, body = opensearch.request("GET", "/cli-keeps/_doc/one")
    assert code == 200 and body["_source"] == {"message": "kept"}, body
    opensearch.request("DELETE", "/cli-keeps")


def test_status_of_an_empty_directory_is_absent(tmp_path: object) -> None:
    proc = cli("opensearch", "status", "--workdir", str(tmp_path), check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout)["state"] == "absent"
