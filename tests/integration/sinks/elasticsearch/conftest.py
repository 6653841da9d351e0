"""The Elasticsearch sink's integration tests: a harness on the session's OpenSearch node, and
everything a test made there removed afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from log_capturer.devtools.opensearch_local import LocalOpenSearch
from tests.conformance.harness_elasticsearch import ElasticsearchHarness


@pytest.fixture
def harness(opensearch: LocalOpenSearch) -> Iterator[ElasticsearchHarness]:
    """A harness with an index name of its own; afterwards the node is up and writable again and
    the harness's indices, data stream and index template are gone."""
    h = ElasticsearchHarness(opensearch)
    try:
        yield h
    finally:
        h.make_available()
        opensearch.request("DELETE", f"/{h.index}*")
        opensearch.request("DELETE", f"/_data_stream/{h.index}-ds")
        opensearch.request("DELETE", f"/_index_template/{h.index}-ds")
