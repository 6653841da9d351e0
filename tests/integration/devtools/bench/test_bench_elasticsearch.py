"""``log-capturer bench --sink elasticsearch`` on the session's real OpenSearch node: a short run
ships every line once and measures both the agent and the bare-client ceiling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from log_capturer.devtools.opensearch_local import LocalOpenSearch
from tests.support import run_cli

pytestmark = pytest.mark.integration


def test_a_short_elasticsearch_bench_ships_every_line_once(
    opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    out = tmp_path / "result.json"
    run_cli(
        "bench",
        "--sink",
        "elasticsearch",
        "--es-url",
        opensearch.url,
        "--lines",
        "5000",
        "--es-batch",
        "500",
        "--out-dir",
        str(tmp_path / "runs"),
        "--json",
        str(out),
        timeout=600,
    )
    result = json.loads(out.read_text())
    assert result["documents"] == 5000 and result["duplicates"] == 0, result
    assert result["agent"]["lines_per_s"] > 0 and result["ceiling"]["lines_per_s"] > 0, result
    assert len(result["ceiling_runs_seconds"]) == 2, result
    assert result["server"].startswith("opensearch 2.19"), result
    # Every index the bench made is gone.
    code, indices = opensearch.request("GET", "/_cat/indices/bench-*?format=json")
    assert code == 200 and indices == [], indices


def test_a_short_bench_into_victorialogs_bulk_ships_every_line_once(tmp_path: Path) -> None:
    """``--es-url victorialogs``: the bench starts its own VictoriaLogs, the agent's Elasticsearch
    sink writes into its ``_bulk`` endpoint, and the server holds every line once (LogsQL)."""
    out = tmp_path / "result.json"
    run_cli(
        "bench",
        "--sink",
        "elasticsearch",
        "--es-url",
        "victorialogs",
        "--lines",
        "5000",
        "--es-batch",
        "500",
        "--out-dir",
        str(tmp_path / "runs"),
        "--json",
        str(out),
        timeout=600,
    )
    result = json.loads(out.read_text())
    assert result["held"] == result["distinct"] == result["ceiling_held"] == 5000, result
    assert result["lost"] == 0 and result["duplicated"] == 0, result
    assert result["agent_lines_per_second"] > 0 and result["ceiling_lines_per_second"] > 0, result
    assert result["server"].startswith("victorialogs http://127.0.0.1:"), result
    assert len(result["ceiling_runs_seconds"]) == 2, result
