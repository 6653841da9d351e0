"""The Loki sink against a server that throttles it: a real nginx (``devtools/nginx_local.py``) in
front of a real VictoriaLogs' Loki push API, with ``limit_req`` answering 429 and ``Retry-After``
to pushes over its rate. VictoriaLogs itself never answers 429 (nor does Grafana Loki's licence
allow it here); nginx's rate limit is the same answer from a real HTTP server.

At full speed the sink gets many real 429s; every line must still arrive exactly once (read back
with LogsQL), nothing parked, the 429s counted in ``sink_requests_total{status="429"}``, as many
as nginx's access log shows, and no push sent while a ``Retry-After`` runs (the access log's times).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.nginx_local import LocalNginx, NginxError, rate_limited_proxy
from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Origin
from tests.conformance.test_sink_conformance import Rig, wait_committed
from tests.integration.sinks.loki.test_loki_sink import Section, start_server
from tests.support import started

pytestmark = pytest.mark.integration

#: nginx lets this many pushes per second through (and a burst of BURST more at once)...
#: Each 2 s wait drains the burst fully, so every burst + RATE x (time to spend it) pushes end in a
#: 429: 200 pushes make about 8 of them when the sink pushes 100/s, 5 at 40/s on a loaded machine.
RATE = 20
BURST = 20
#: ...and tells the sink to come back after this many seconds.
RETRY_AFTER = 2
#: How much earlier or later than nginx's clock the sink may see an answer or send a push.
MARGIN = 0.5


@pytest.fixture
def victorialogs(tmp_path: Path) -> Iterator[LocalVictoriaLogs]:
    server = start_server(tmp_path)
    yield server
    server.down()


@pytest.fixture
def proxy(victorialogs: LocalVictoriaLogs, tmp_path: Path) -> Iterator[tuple[LocalNginx, str]]:
    port = free_port()
    nginx = LocalNginx(
        tmp_path / "nginx", rate_limited_proxy(port, victorialogs.url, RATE, BURST, RETRY_AFTER), [port]
    )
    started(nginx, "nginx", NginxError)
    yield nginx, f"http://127.0.0.1:{port}"
    nginx.down()


def test_429_with_retry_after_from_a_rate_limit_loses_and_duplicates_nothing(
    victorialogs: LocalVictoriaLogs, proxy: tuple[LocalNginx, str], tmp_path: Path
) -> None:
    nginx, url = proxy
    sec = Section(victorialogs, default_labels={"job": "throttled"}, batch_size=100, max_in_flight=8)
    sec.extra["url"] = url
    n = 20_000
    lines = [f"throttled line {i:06d}" for i in range(n)]
    cp = Checkpoint()
    started = time.monotonic()
    with Rig(sec, tmp_path) as rig:  # type: ignore[arg-type]
        rig.feed(Origin("file", "/throttled.log"), lines, cp, 500)
        wait_committed({cp: n}, 120, "every line acknowledged")
        took = time.monotonic() - started
        rig.assert_acknowledged_once()
        stats = rig.stats()
        get = rig.metrics.registry.get_sample_value
        requests = {
            status: get("sink_requests_total", {"sink_type": "loki", "status": status}) or 0
            for status in ("204", "429")
        }
        parked = rig.parked()
    logged = Counter(nginx.statuses())
    # Retry-After honoured: no push began in the heart of the wait after a 429 (pushes already on
    # their way when it came may arrive just after it; the next ones leave once the wait is over).
    reqs = nginx.requests()
    early = [
        (round(q.start - r.end, 3), q.status)
        for r in reqs
        if r.status == 429
        for q in reqs
        if r.end + MARGIN < q.start < r.end + RETRY_AFTER - MARGIN
    ]
    assert not early, f"pushes sent during a Retry-After wait (seconds after the 429, status): {early[:5]}"
    print({"took_s": round(took, 1), "requests": requests, "nginx": dict(logged)})
    # A run at full speed is throttled for real, many times.
    assert requests["429"] >= 5, f"nginx answered 429 only {requests['429']} times: the test proves nothing"
    # Every push the sink made went through nginx: the counts match its access log.
    assert requests["429"] == logged[429] and requests["204"] == logged[204], (requests, logged)
    assert set(logged) <= {204, 429}, logged
    # Nothing lost, nothing twice (a 429 from nginx never reached VictoriaLogs), nothing parked.
    rows = victorialogs.query('{job="throttled"} | stats count() as n, count_uniq(message) as u')
    assert rows and (int(rows[0]["n"]), int(rows[0]["u"])) == (n, n), rows
    got = Counter(r["message"] for r in victorialogs.query('{job="throttled"}'))
    assert sorted(got) == lines and set(got.values()) == {1}
    assert parked == [] and stats["parked"] == 0 and stats["delivered"] == n, stats
    assert rig.sent("success") == n and rig.sent("dlq") == 0
