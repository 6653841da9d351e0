"""The Elasticsearch sink's harness: the session's real OpenSearch node (``opensearch`` in
tests/conftest.py, OpenSearch 2.19 from Maven Central).

Each test gets its own index (one shard, no replica), created before the test. Faults are the
node's own: it is stopped (SIGTERM) and started again with its data, paused (SIGSTOP, then
SIGCONT), and an ingest pipeline with a ``fail`` processor, made the index's
``index.default_pipeline`` by :meth:`refuse`, refuses the documents whose message starts with
``REFUSED``: a real per-item error of a ``_bulk`` answer, for that document's own sake (the other
items of the same request are indexed). The node is always running again after a test.

Order: documents in an index have no order of their own (an index is searched, not read in
sequence), so only exactly-once is checked (``none``). Exactly-once holds even for the kill -9
scenario: the document ids come from the lines' positions, so lines read again after the kill
are not indexed twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from log_capturer.devtools.opensearch_local import LocalOpenSearch
from tests.conformance.harness import DeadLetter, Order, Received, poll_received
from tests.support import _merge

REFUSED_PREFIX = "REFUSED"
FAIL_TEXT = "refused by the conformance pipeline"


def read_index(node: LocalOpenSearch, index: str) -> list[dict[str, Any]]:
    """Every document of ``index`` (its ``_id`` added as ``_id``), after a refresh."""
    node.request("POST", f"/{index}/_refresh")
    code, page = node.request("POST", f"/{index}/_search?scroll=1m", {"size": 5000, "sort": ["_doc"]})
    if code == 404:
        return []
    if code == 503 and page.get("error", {}).get("type") == "search_phase_execution_exception":
        return []  # the index was just created: its primary shard is not allocated yet
    assert code == 200, page
    out: list[dict[str, Any]] = []
    try:
        while page["hits"]["hits"]:
            out += [{**h["_source"], "_id": h["_id"]} for h in page["hits"]["hits"]]
            code, page = node.request(
                "POST", "/_search/scroll", {"scroll": "1m", "scroll_id": page["_scroll_id"]}
            )
            assert code == 200, page
    finally:
        if "_scroll_id" in page:
            node.request("DELETE", "/_search/scroll", {"scroll_id": page["_scroll_id"]})
    return out


class ElasticsearchHarness:
    name = "elasticsearch"
    section = "elasticsearch"
    order: Order = "none"
    refused_reason = "send_error"
    refused_text = FAIL_TEXT

    def __init__(self, node: LocalOpenSearch) -> None:
        self.node = node
        self.index = f"conf-{uuid.uuid4().hex[:12]}"
        code, body = node.request(
            "PUT", f"/{self.index}", {"settings": {"number_of_shards": 1, "number_of_replicas": 0}}
        )
        assert code == 200, body
        self._paused = False

    def config(self, delivery: Mapping[str, Any] | None = None) -> dict[str, Any]:
        section: dict[str, Any] = {
            "enabled": True,
            "endpoints": [self.node.url],
            "index": self.index,
            "batch": {"timeout": "20ms"},
            "request_timeout": "10s",
        }
        _merge(section, dict(delivery or {}))
        return section

    def received(self, expected: int, timeout: float = 60.0) -> list[Received]:
        def read() -> list[Received]:
            return [
                Received(d["message"], d["source_id"], self.index, 0)
                for d in read_index(self.node, self.index)
            ]

        return poll_received(read, expected, timeout, interval=0.5)

    def dead_letters(self) -> list[DeadLetter]:
        return []  # no dead-letter output of its own: refused records are in the local store

    def refuse(self) -> None:
        pipeline = f"{self.index}-refuse"
        code, body = self.node.request(
            "PUT",
            f"/_ingest/pipeline/{pipeline}",
            {
                "processors": [
                    {
                        "fail": {
                            "if": f"ctx.message != null && ctx.message.startsWith('{REFUSED_PREFIX}')",
                            "message": FAIL_TEXT,
                        }
                    }
                ]
            },
        )
        assert code == 200, body
        code, body = self.node.request(
            "PUT", f"/{self.index}/_settings", {"index.default_pipeline": pipeline}
        )
        assert code == 200, body

    def refused_line(self, i: int) -> str:
        return f"{REFUSED_PREFIX} by the ingest pipeline {i}"

    def make_unavailable(self) -> None:
        self.node.stop()

    def make_available(self) -> None:
        self.release()
        if self.node.pid() is None or self.node.status()["state"] != "up":
            self.node.up(timeout=180)

    def saturate(self) -> None:
        self.node.pause()
        self._paused = True

    def release(self) -> None:
        if self._paused:
            self.node.resume()
            self._paused = False


def open_harness(request: pytest.FixtureRequest, tmp: Path) -> Iterator[ElasticsearchHarness]:
    node: LocalOpenSearch = request.getfixturevalue("opensearch")
    harness = ElasticsearchHarness(node)
    try:
        yield harness
    finally:
        harness.make_available()
        node.request("DELETE", f"/{harness.index}")
