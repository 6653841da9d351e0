"""The sinks.elasticsearch section: what it accepts and how it says what is wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from log_capturer.sinks.elasticsearch.config import ElasticsearchSinkConfig


def test_defaults_are_idempotent_daily_indices_with_gzip() -> None:
    c = ElasticsearchSinkConfig()
    assert not c.enabled
    assert c.index == "logs-%Y.%m.%d" and c.op_type == "create" and c.document_id == "source_position"
    assert c.compression == "gzip" and c.endpoints == ["http://127.0.0.1:9200"]


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"endpoints": ["127.0.0.1:9200"]}, "not an http:// or https:// URL"),
        ({"index": "Logs-%Y"}, "valid index name"),
        ({"index": "logs %Y"}, "valid index name"),
        ({"index_field": "message"}, "labels.<name>"),
        ({"auth": {"type": "basic"}}, "auth.username"),
        ({"auth": {"type": "api_key"}}, "auth.api_key"),
        ({"tls": {"cert_file": "c.pem"}}, "key_file"),
        ({"op_type": "upsert"}, "create"),
    ],
)
def test_bad_values_name_the_fix(section: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        ElasticsearchSinkConfig.model_validate({"enabled": True, **section})
    assert fragment in str(info.value)


def test_endpoints_lose_their_trailing_slash() -> None:
    c = ElasticsearchSinkConfig.model_validate({"endpoints": ["https://es.example:9200/prefix/"]})
    assert c.endpoints == ["https://es.example:9200/prefix"]
