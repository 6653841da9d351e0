"""Basic auth, API keys, TLS and mutual TLS, against real servers: Debian's nginx (as a secured
cluster is usually reached) in front of the session's OpenSearch node, which has no security
plugin of its own. nginx terminates TLS (its certificate from the project's local CA), checks
basic auth, a client certificate, or an ``ApiKey`` header, and proxies to OpenSearch; every case
is asserted by reading the index back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from log_capturer.devtools.certs import TlsMaterial, generate
from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.nginx_local import LocalNginx, NginxError
from log_capturer.devtools.opensearch_local import LocalOpenSearch
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Origin
from tests.conformance.harness_elasticsearch import ElasticsearchHarness, read_index
from tests.conformance.test_sink_conformance import Rig
from tests.support import started, wait_until

pytestmark = pytest.mark.integration

USER, PASSWORD = "shipper", "shipper-secret"
API_KEY = "bG9nLWNhcHR1cmVyOnRlc3Qta2V5"


@dataclass
class Front:
    tls: TlsMaterial
    basic_tls: str
    mtls: str
    api_key: str


def _conf(work: Path, tls: TlsMaterial, upstream: str, ports: dict[str, int]) -> str:
    """The ``http`` body of :class:`~log_capturer.devtools.nginx_local.LocalNginx`: three secured
    fronts of ``upstream``."""
    (work / "htpasswd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    proxy = f'proxy_pass {upstream}; proxy_set_header Authorization ""; client_max_body_size 100m;'
    return f"""
  server {{
    listen 127.0.0.1:{ports["basic_tls"]} ssl;
    ssl_certificate {tls.server_cert};
    ssl_certificate_key {tls.server_key};
    auth_basic "elasticsearch";
    auth_basic_user_file {work / "htpasswd"};
    location / {{ {proxy} }}
  }}
  server {{
    listen 127.0.0.1:{ports["mtls"]} ssl;
    ssl_certificate {tls.server_cert};
    ssl_certificate_key {tls.server_key};
    ssl_client_certificate {tls.ca_file};
    ssl_verify_client optional;
    location / {{
      if ($ssl_client_verify != SUCCESS) {{ return 403; }}
      {proxy}
    }}
  }}
  server {{
    listen 127.0.0.1:{ports["api_key"]};
    location / {{
      if ($http_authorization != "ApiKey {API_KEY}") {{ return 401; }}
      {proxy}
    }}
  }}
"""


@pytest.fixture(scope="module")
def front(opensearch: LocalOpenSearch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    work = tmp_path_factory.mktemp("nginx")
    tls = generate(work / "tls")
    ports = {k: free_port() for k in ("basic_tls", "mtls", "api_key")}
    nginx = LocalNginx(work, _conf(work, tls, opensearch.url, ports), list(ports.values()))
    started(nginx, "nginx", NginxError)
    try:
        yield Front(
            tls,
            f"https://127.0.0.1:{ports['basic_tls']}",
            f"https://127.0.0.1:{ports['mtls']}",
            f"http://127.0.0.1:{ports['api_key']}",
        )
    finally:
        nginx.down()


def ship(harness: ElasticsearchHarness, tmp_path: Path, section: dict[str, Any], n: int = 50) -> Rig:
    with Rig(harness, tmp_path, section) as rig:
        rig.feed(Origin("file", "secured"), [f"secured {i}" for i in range(n)], Checkpoint(), 25)
        wait_until(lambda: all(c.done for c in rig.chunks), 60, "every line acknowledged")
        assert rig.stats()["delivered"] == n and not rig.parked()
    return rig


def cases(front: Front) -> dict[str, dict[str, Any]]:
    ca = str(front.tls.ca_file)
    return {
        "basic_auth_over_tls": {
            "endpoints": [front.basic_tls],
            "auth": {"type": "basic", "username": USER, "password": PASSWORD},
            "tls": {"enabled": True, "ca_file": ca},
        },
        "mutual_tls": {
            "endpoints": [front.mtls],
            "tls": {
                "enabled": True,
                "ca_file": ca,
                "cert_file": str(front.tls.client_cert),
                "key_file": str(front.tls.client_key),
            },
        },
        "api_key": {"endpoints": [front.api_key], "auth": {"type": "api_key", "api_key": API_KEY}},
    }


@pytest.mark.parametrize("case", ["basic_auth_over_tls", "mutual_tls", "api_key"])
def test_secured_endpoints_take_every_line(
    case: str, front: Front, harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    ship(harness, tmp_path, cases(front)[case])
    docs = read_index(opensearch, harness.index)
    assert sorted(d["message"] for d in docs) == sorted(f"secured {i}" for i in range(50))


@pytest.mark.parametrize(
    ("case", "change", "error"),
    [
        ("basic_auth_over_tls", {"auth": {"password": "wrong-password"}}, "401"),
        ("basic_auth_over_tls", {"tls": {"ca_file": ""}}, "CERTIFICATE_VERIFY_FAILED"),
        ("mutual_tls", {"tls": {"cert_file": "", "key_file": ""}}, "403"),
        ("api_key", {"auth": {"api_key": "bm90LXRoZS1rZXk="}}, "401"),
    ],
)
def test_refused_credentials_lose_nothing_and_park_nothing(
    case: str,
    change: dict[str, Any],
    error: str,
    front: Front,
    harness: ElasticsearchHarness,
    opensearch: LocalOpenSearch,
    tmp_path: Path,
) -> None:
    """Wrong credentials, an unknown CA, no client certificate (nginx answers 403, as a cluster
    refusing the client): the lines wait unacknowledged
    (retried, the breaker opens), nothing is parked or indexed, and the error says why."""
    section = cases(front)[case]
    for key, value in change.items():
        section[key] = {**section.get(key, {}), **value}
    section["timeout"] = "120s"
    with Rig(harness, tmp_path, section) as rig:
        chunks = rig.feed(Origin("file", "refused"), [f"refused {i}" for i in range(20)], Checkpoint(), 10)
        wait_until(lambda: error in str(rig.stats()["last_error"]), 30, f"the error {error}")
        time.sleep(2)
        assert not any(c.done for c in chunks), (rig.stats(), rig.parked()[:1])
        assert not rig.parked()
        assert rig.stats()["delivered"] == 0
    assert read_index(opensearch, harness.index) == []
