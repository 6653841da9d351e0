"""The Elasticsearch sink against whole ``_bulk`` requests refused with 429, as a quota gateway in
front of a cluster answers them: a real nginx (``devtools/nginx_local.py``) in front of the
session's OpenSearch node answers 429 to a fifth of the requests, drawn per request, whatever
their rate (the node's own 429s, per item and per request from a saturated write pool, are in
``test_faults.py``).

Every line must be in the index exactly once, nothing parked, and the 429s counted in
``sink_requests_total{status="429"}``, as many as nginx's access log shows.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.nginx_local import LocalNginx, NginxError, share_refusing_proxy
from log_capturer.devtools.opensearch_local import LocalOpenSearch
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Origin
from tests.conformance.harness_elasticsearch import ElasticsearchHarness, read_index
from tests.conformance.test_sink_conformance import Rig
from tests.integration.sinks.elasticsearch.test_faults import settle
from tests.support import started

pytestmark = pytest.mark.integration


def test_whole_requests_refused_with_429_are_sent_again_until_every_line_is_in(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    port = free_port()
    nginx = LocalNginx(tmp_path / "nginx", share_refusing_proxy(port, opensearch.url, 20), [port])
    started(nginx, "nginx", NginxError)
    n = 2000
    lines = [f"throttled {i}" for i in range(n)]
    delivery = {
        "endpoints": [f"http://127.0.0.1:{port}"],
        "concurrency": 4,
        "batch": {"max_events": 25, "timeout": "5ms"},
        "circuit_breaker": {"timeout": "1s"},
        # Longer than the run: a record refused several times in a row waits, it is not parked.
        "timeout": "120s",
    }
    try:
        with Rig(harness, tmp_path, delivery) as rig:
            rig.feed(Origin("file", "/throttled.log"), lines, Checkpoint(), 500)
            settle(rig, n, 120)
            rig.assert_acknowledged_once()
            stats = rig.stats()
            get = rig.metrics.registry.get_sample_value
            refused = get("sink_requests_total", {"sink_type": "elasticsearch", "status": "429"}) or 0
            parked = rig.parked()
    finally:
        nginx.down()
    bulk_429 = sum(1 for r in nginx.requests() if r.status == 429 and r.method == "POST")
    print({"429": refused, "nginx": dict(Counter(nginx.statuses())), "stats": stats})
    assert refused >= 5, f"nginx answered 429 only {refused} times: the test proves nothing"
    assert refused == bulk_429, (refused, bulk_429)
    assert parked == [] and stats["parked"] == 0 and stats["delivered"] == n, stats
    counts = Counter(d["message"] for d in read_index(opensearch, harness.index))
    assert sorted(counts) == sorted(lines) and set(counts.values()) == {1}
