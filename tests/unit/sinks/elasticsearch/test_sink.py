"""The component: what validate reports without a server, and how the sink is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from log_capturer.engine.runner import SinkRunner
from log_capturer.observability.metrics import Metrics
from log_capturer.sinks.base import SinkStartError
from log_capturer.sinks.elasticsearch.config import ElasticsearchSinkConfig
from log_capturer.sinks.elasticsearch.service import tls_context
from log_capturer.sinks.elasticsearch.sink import COMPONENT, ElasticsearchSink


def test_unreadable_tls_files_of_an_https_endpoint_are_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "ca.pem")
    https = ElasticsearchSinkConfig(enabled=True, endpoints=["https://es:9200"], tls={"ca_file": missing})
    assert COMPONENT.problems(https) == [
        f"sinks.elasticsearch.tls.ca_file: {missing} does not exist; give a PEM file the agent can read, "
        "such as `ca_file: /etc/log-capturer/tls/ca.pem`"
    ]
    plain = ElasticsearchSinkConfig(enabled=True, endpoints=["http://es:9200"], tls={"ca_file": missing})
    assert COMPONENT.problems(plain) == []
    with pytest.raises(SinkStartError, match=r"tls\.ca_file"):
        tls_context(https)


def test_a_bad_client_certificate_stops_the_start_with_the_keys(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("not a certificate")
    key.write_text("not a key")
    config = ElasticsearchSinkConfig(
        enabled=True, endpoints=["https://es:9200"], tls={"cert_file": str(cert), "key_file": str(key)}
    )
    with pytest.raises(SinkStartError, match=r"sinks\.elasticsearch\.tls: cannot load the certificates"):
        tls_context(config)


def test_the_sink_is_the_engine_around_the_service() -> None:
    sink = ElasticsearchSink(ElasticsearchSinkConfig(enabled=True), Metrics(), None)
    assert isinstance(sink, SinkRunner)
    assert sink.name == "elasticsearch_sink" and sink.sink_type == "elasticsearch"
    assert sink.bulk.park_after == 0.0  # no local DLQ: nothing is parked for a timeout
    assert sink.bulk.headers["Content-Encoding"] == "gzip"


def test_credentials_become_headers() -> None:
    basic = ElasticsearchSink(
        ElasticsearchSinkConfig(enabled=True, auth={"type": "basic", "username": "u", "password": "p"}),
        Metrics(),
        None,
    )
    assert basic.bulk.headers["Authorization"] == "Basic dTpw"
    key = ElasticsearchSink(
        ElasticsearchSinkConfig(enabled=True, auth={"type": "api_key", "api_key": "abc=="}), Metrics(), None
    )
    assert key.bulk.headers["Authorization"] == "ApiKey abc=="
