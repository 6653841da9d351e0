from __future__ import annotations

import pytest

from log_capturer.config.schema import HttpIngestConfig
from log_capturer.processing.timestamps import parse_rfc3339
from log_capturer.sources.http import IngestError, Records, parse_body


def rejected(body: bytes) -> str:
    with pytest.raises(IngestError) as exc:
        Records(HttpIngestConfig()).chunks(parse_body(body))
    assert exc.value.status == 400
    return exc.value.reason


def test_body_forms() -> None:
    assert parse_body(b'{"message": "a"}') == [{"message": "a"}]
    assert parse_body(b'{\n  "message": "pretty"\n}\n') == [{"message": "pretty"}]
    assert parse_body(b'[{"message": "a"}, {"message": "b"}]') == [{"message": "a"}, {"message": "b"}]
    assert parse_body(b'{"message": "a"}\n\n{"message": "b"}\r\n') == [{"message": "a"}, {"message": "b"}]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b"not json", "line 1: invalid JSON"),
        (b'{"message": "a"}\n{oops', "line 2: invalid JSON"),
        (b"[1, 2", "invalid JSON array"),
        (b"[]", "the array holds no record"),
        (b'["a"]', "record 1: must be a JSON object, not a string"),
        (b"42", "the body must hold JSON objects, not a number"),
        (b'{"message": "a"}\n[1]', "line 2: must be a JSON object, not an array"),
        (b'{"level": "info"}', "record 1: 'message' is missing"),
        (b'{"message": ""}', "record 1: 'message' is empty"),
        (b'{"message": "  "}', "record 1: 'message' is empty"),
        (b'{"message": 5}', "record 1: 'message' must be a string, not a number"),
        (b'{"message": "a"}\n{"message": null}', "record 2: 'message' is missing"),
        (b'{"message": "a", "level": "loud"}', "record 1: unknown level 'loud'"),
        (b'{"message": "a", "labels": ["x"]}', "record 1: 'labels' must be an object, not an array"),
        (b'{"message": "a", "labels": {"n": 1}}', "record 1: label 'n' must be a string, not a number"),
        (b'{"message": "a", "source_id": 7}', "record 1: 'source_id' must be a non-empty string"),
        (b'{"message": "a", "source_type": ""}', "record 1: 'source_type' must be a non-empty string"),
        (b'{"message": "a", "timestamp": "soon"}', "record 1: 'timestamp' must be RFC 3339"),
        (b'{"message": "a", "timestamp": true}', "record 1: 'timestamp' must be RFC 3339"),
        (b'{"message": "a", "fields": "x"}', "record 1: 'fields' must be an object, not a string"),
        (b'{"message": "a"}\xff', "line 1: invalid JSON"),
    ],
)
def test_invalid_input_is_rejected_with_a_reason(body: bytes, reason: str) -> None:
    assert reason in rejected(body)


def test_records_become_one_chunk_per_origin_in_order() -> None:
    cfg = HttpIngestConfig(labels={"env": "prod", "team": "a"}, pipeline="")
    records = parse_body(
        b'{"message": "one", "labels": {"team": "b"}}\n'
        b'{"message": "two", "source_id": "svc-2", "level": "WARNING", "timestamp": "2026-11-25T08:00:00Z"}\n'
        b'{"message": "three", "labels": {"team": "b"}, "user": "ann", "fields": {"n": 1}}\n'
        b'{"message": "four", "source_id": "svc-2", "timestamp": 1795593600.5, "level": 50}\n'
    )
    chunks = Records(cfg).chunks(records)
    assert [c.lines for c in chunks] == [["one", "three"], ["two", "four"]]
    first, second = chunks
    assert (first.origin.source_type, first.origin.source_id) == ("api", "http")
    assert first.origin.labels == {"env": "prod", "team": "b"}
    assert first.meta == [None, {"user": "ann", "n": 1}]
    assert first.preset_levels is None and first.timestamps is None
    assert second.origin.source_id == "svc-2"
    assert second.origin.labels == {"env": "prod", "team": "a"}
    assert second.preset_levels == ["warn", "error"]
    assert second.timestamps == [parse_rfc3339("2026-11-25T08:00:00Z"), 1_795_593_600_500_000_000]


def test_origins_are_reused_across_requests() -> None:
    records = Records(HttpIngestConfig(pipeline="p"))
    a = records.chunks([{"message": "x"}])[0].origin
    b = records.chunks([{"message": "y"}])[0].origin
    assert a is b and a.pipeline == "p"
