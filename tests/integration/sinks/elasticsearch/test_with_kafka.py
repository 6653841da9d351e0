"""Three sinks at once: every line to Kafka, to local files and to OpenSearch (real servers). A
file's checkpoint moves only once all three have its lines: with OpenSearch stopped, Kafka and
the files get every line but the checkpoint stays; once OpenSearch is back it reaches the end,
and each store holds every line exactly once."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from log_capturer.devtools.opensearch_local import LocalOpenSearch
from tests.conformance.harness_elasticsearch import ElasticsearchHarness, read_index
from tests.support import (
    AgentProcess,
    agent_config,
    consume_all,
    create_prefixed_topics,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

LINES = 2000


def local_messages(directory: Path) -> list[str]:
    return [
        orjson.loads(line)["message"]
        for p in sorted(directory.glob("*.log"))
        for line in p.read_bytes().splitlines()
    ]


def test_a_line_is_checkpointed_only_once_kafka_files_and_opensearch_have_it(
    tmp_path: Path, bootstrap: str, topic_prefix: str, opensearch: LocalOpenSearch
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    es = ElasticsearchHarness(opensearch)
    out = tmp_path / "out"
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        sinks={
            "local_file": {"enabled": True, "directory": str(out), "filename_pattern": "all.log"},
            "elasticsearch": es.config({"timeout": "300s", "circuit_breaker": {"timeout": "2s"}}),
        },
    )
    app = tmp_path / "logs" / "app.log"
    app.write_text("".join(f"before seq={i}\n" for i in range(LINES)))
    agent = AgentProcess(write_config(tmp_path / "config.yaml", cfg), tmp_path / "agent.log").start()
    shipped = [t for name, t in topics.items() if name != "logs-dlq"]

    def offset() -> int:
        return int(agent.get("/positions")["files"].get(str(app), {}).get("offset", -1))

    try:
        wait_until(lambda: offset() == app.stat().st_size, 120, "the first lines checkpointed")
        es.make_unavailable()
        end_before = app.stat().st_size
        with app.open("a") as f:
            f.write("".join(f"during seq={i}\n" for i in range(LINES)))
        wait_until(lambda: len(local_messages(out)) >= 2 * LINES, 120, "the files to have every line")
        records = consume_all(bootstrap, shipped, expected=2 * LINES, timeout=120)
        time.sleep(2)
        assert offset() == end_before, "the checkpoint moved while OpenSearch did not have the lines"
        es.make_available()
        wait_until(lambda: offset() == app.stat().st_size, 180, "the checkpoint to reach the end")
        stats = agent.get("/stats")["sinks"]
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        es.make_available()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    want = Counter([f"before seq={i}" for i in range(LINES)] + [f"during seq={i}" for i in range(LINES)])
    assert Counter(r.json()["message"] for r in records) == want
    assert Counter(local_messages(out)) == want
    assert Counter(d["message"] for d in read_index(opensearch, es.index)) == want
    assert (
        stats["elasticsearch_sink"]["delivered"] == 2 * LINES and stats["elasticsearch_sink"]["parked"] == 0
    )
    opensearch.request("DELETE", f"/{es.index}")
