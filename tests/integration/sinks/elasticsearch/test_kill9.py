"""Idempotent writes, proved: the agent (a file source, only the Elasticsearch sink) is killed
with SIGKILL twice while the file grows and started again; the lines read again after each kill
carry the same document ids, so the index holds every line exactly once."""

from __future__ import annotations

import signal
from collections import Counter
from functools import partial
from pathlib import Path

import orjson
import pytest

from log_capturer.devtools.opensearch_local import LocalOpenSearch
from tests.conformance.harness_elasticsearch import ElasticsearchHarness, read_index
from tests.conformance.test_sink_conformance import agent_settings, lines_read_at_least
from tests.integration.reliability.conftest import generate
from tests.support import AgentProcess, wait_until, write_config

pytestmark = pytest.mark.integration

LINES = 20_000
RATE = 4000


def test_kill_9_twice_and_restart_leaves_every_line_exactly_once(
    opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    harness = ElasticsearchHarness(opensearch)
    (tmp_path / "logs").mkdir()
    path = write_config(tmp_path / "config.yaml", agent_settings(tmp_path, harness))
    writer = generate(tmp_path / "logs" / "app.log", RATE, count=LINES)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    try:
        for at in (3000, 9000):
            wait_until(partial(lines_read_at_least, agent, at), 60, "lines flowing")
            agent.kill()
            agent = AgentProcess(path, tmp_path / "agent.log").start()
        assert writer.wait(120) == 0
        wait_until(lambda: len(read_index(opensearch, harness.index)) >= LINES, 120, "every line indexed")
        wait_until(
            lambda: agent.get("/stats")["files"]["in_flight_lines"] == 0, 60, "the last acknowledgements"
        )
        stats = agent.get("/stats")["sinks"]["elasticsearch_sink"]
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        writer.kill()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    docs = read_index(opensearch, harness.index)
    counts = Counter(int(orjson.loads(d["message"])["seq"]) for d in docs)
    missing = sorted(set(range(LINES)) - set(counts))
    assert not missing, f"{len(missing)} lines lost, e.g. seq {missing[:5]}"
    assert len(docs) == LINES, f"{len(docs) - LINES} documents indexed twice"
    assert set(counts.values()) == {1}
    assert not list((tmp_path / "dlq").glob("dlq_entry_*.json")), "nothing should have been parked"
    print(orjson.dumps({"documents": len(docs), "last_run_sink_stats": stats}).decode())
    opensearch.request("DELETE", f"/{harness.index}")
