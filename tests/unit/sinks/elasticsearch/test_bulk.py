"""Documents, ids, request bodies and what answers mean (no server: the real-server behaviour is
in tests/integration/sinks/elasticsearch and the conformance suite)."""

from __future__ import annotations

import gzip

import orjson
import pytest

from log_capturer.engine.contract import Failure, Record
from log_capturer.record import Chunk, Origin
from log_capturer.sinks.elasticsearch import bulk
from log_capturer.sinks.elasticsearch.config import ElasticsearchSinkConfig
from log_capturer.sinks.kafka.encode import encode_chunk


def file_chunk(lines: list[str], start: int, stream: str = "8:42", sep: int = 1) -> Chunk:
    """A chunk as the file source reads it: ``lines`` from ``start``, each ended by ``sep`` bytes."""
    end = start + sum(len(s.encode()) + sep for s in lines)
    chunk = Chunk(Origin("file", "/var/log/app.log"), lines, start, end)
    chunk.stream = stream
    chunk.levels = [""] * len(lines)
    return chunk


def ids_of(chunk: Chunk) -> list[str]:
    return bulk.doc_ids(chunk, [s.encode() for s in chunk.lines])


LINES = [f"line {i} é" for i in range(10)]


def test_exact_positions_give_the_same_id_whatever_the_chunk_boundaries() -> None:
    whole = ids_of(file_chunk(LINES, 100))
    first = file_chunk(LINES[:4], 100)
    second = file_chunk(LINES[4:], first.end)
    assert ids_of(first) + ids_of(second) == whole
    assert len(set(whole)) == len(whole)


def test_ids_differ_by_file_identity_offset_and_text() -> None:
    base = ids_of(file_chunk(["same"], 0))
    assert ids_of(file_chunk(["same"], 0, stream="8:43")) != base  # a rotated file's new inode
    assert ids_of(file_chunk(["same"], 5)) != base
    assert ids_of(file_chunk(["other"], 0)) != base  # a file truncated in place and written again
    assert ids_of(file_chunk(["same"], 0)) == base


def test_inexact_positions_fall_back_to_the_chunk_start_and_index() -> None:
    crlf = file_chunk(["a", "b"], 10, sep=2)  # CRLF lines: the offsets are not known
    ids = ids_of(crlf)
    assert ids == ids_of(file_chunk(["a", "b"], 10, sep=2)) and len(set(ids)) == 2
    assert ids != ids_of(file_chunk(["a", "b"], 10))


def test_event_times_give_stable_ids_and_identical_lines_stay_distinct() -> None:
    chunk = Chunk(Origin("docker", "c1"), ["x", "x", "y"], 0, 500)
    chunk.timestamps = [7, 7, 8]
    ids = ids_of(chunk)
    assert len(set(ids)) == 3
    again = Chunk(Origin("docker", "c1"), ["x", "x", "y"], 0, 400)
    again.timestamps = [7, 7, 8]
    assert ids_of(again) == ids


def test_no_positions_give_ids_unique_per_chunk() -> None:
    a = Chunk(Origin("syslog", "peer"), ["m", "m"])
    b = Chunk(Origin("syslog", "peer"), ["m", "m"])
    assert len(set(ids_of(a)) | set(ids_of(b))) == 4


def test_documents_rename_the_timestamp_and_name_the_index_by_date() -> None:
    config = ElasticsearchSinkConfig(enabled=True, index="logs-%Y.%m.%d")
    chunk = file_chunk(["hello"], 0)
    chunk.read_time_ns = 1_700_000_000 * 10**9  # 2023-11-14 UTC
    records = bulk.Documents(config).records(chunk, encode_chunk(chunk, None))
    assert records[0].topic == "logs-2023.11.14"
    doc = orjson.loads(records[0].value)
    assert doc["@timestamp"].startswith("2023-11-14T") and "timestamp" not in doc
    assert doc["message"] == "hello" and doc["source_id"] == "/var/log/app.log"
    assert records[0].key == ids_of(chunk)[0]


def test_event_times_choose_each_line_s_index() -> None:
    config = ElasticsearchSinkConfig(enabled=True, index="logs-%Y.%m.%d")
    chunk = file_chunk(["a", "b"], 0)
    chunk.timestamps = [0, 86_400 * 10**9]
    records = bulk.Documents(config).records(chunk, encode_chunk(chunk, None))
    assert [r.topic for r in records] == ["logs-1970.01.01", "logs-1970.01.02"]


def test_the_index_from_a_label_with_the_pattern_as_fallback() -> None:
    config = ElasticsearchSinkConfig(enabled=True, index="fallback", index_field="labels.team")
    docs = bulk.Documents(config)
    for labels, want in (
        ({"team": "payments"}, "payments"),
        ({"team": "Bad Name"}, "fallback"),
        ({}, "fallback"),
    ):
        chunk = Chunk(Origin("file", "f", labels), ["x"], 0, 2)
        chunk.levels = [""]
        assert docs.records(chunk, encode_chunk(chunk, None))[0].topic == want


def test_document_id_none_lets_the_server_choose() -> None:
    config = ElasticsearchSinkConfig(enabled=True, document_id="none")
    chunk = file_chunk(["a"], 0)
    assert bulk.Documents(config).records(chunk, encode_chunk(chunk, None))[0].key is None


def test_body_is_ndjson_with_actions() -> None:
    records = [Record("ix", b'{"message":"a"}', "id1"), Record("ix", b'{"message":"b"}', None)]
    text = bulk.body(records, "create", "pipe", "_doc")
    lines = text.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 5
    assert orjson.loads(lines[0]) == {
        "create": {"_index": "ix", "_id": "id1", "_type": "_doc", "pipeline": "pipe"}
    }
    assert orjson.loads(lines[1]) == {"message": "a"}
    assert orjson.loads(lines[2]) == {"create": {"_index": "ix", "_type": "_doc", "pipeline": "pipe"}}
    assert gzip.decompress(gzip.compress(text)) == text


@pytest.mark.parametrize(
    ("item", "op", "want"),
    [
        ({"status": 201}, "create", None),
        (
            {"status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "exists"}},
            "create",
            None,
        ),
        (
            {"status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "x"}},
            "index",
            Failure.REJECT,
        ),
        (
            {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}},
            "create",
            Failure.RETRY_ALONE,
        ),
        (
            {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse"}},
            "create",
            Failure.REJECT,
        ),
        (
            {"status": 400, "error": {"type": "index_closed_exception", "reason": "closed"}},
            "create",
            Failure.REJECT,
        ),
        (
            {"status": 403, "error": {"type": "cluster_block_exception", "reason": "read-only"}},
            "create",
            Failure.REJECT,
        ),
        (
            {"status": 503, "error": {"type": "unavailable_shards_exception", "reason": "primary"}},
            "create",
            Failure.RETRY,
        ),
        (
            {"status": 500, "error": {"type": "fail_processor_exception", "reason": "no"}},
            "create",
            Failure.REJECT,
        ),
    ],
)
def test_item_outcomes(item: dict[str, object], op: str, want: Failure | None) -> None:
    failure, etype, text = bulk.outcome_of_item(item, op)
    assert failure is want
    if want is not None:
        assert etype and str(item["status"]) in text


def test_an_existing_document_is_delivered_and_said_so() -> None:
    item = {"status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}
    assert bulk.outcome_of_item(item, "create") == (None, "exists", "")


def test_item_error_text_carries_the_cause() -> None:
    item = {
        "status": 400,
        "error": {
            "type": "mapper_parsing_exception",
            "reason": "failed to parse field [fields.x]",
            "caused_by": {"type": "illegal_state_exception", "reason": "Can't get text on a START_OBJECT"},
        },
    }
    _failure, etype, text = bulk.outcome_of_item(item, "create")
    assert etype == "mapper_parsing_exception"
    assert "fields.x" in text and "START_OBJECT" in text


@pytest.mark.parametrize(
    ("status", "want"),
    [
        (429, Failure.RETRY),
        (500, Failure.RETRY),
        (503, Failure.RETRY),
        (401, Failure.RETRY),
        (413, Failure.RETRY_ALONE),
        (400, Failure.RETRY_ALONE),
    ],
)
def test_request_outcomes(status: int, want: Failure) -> None:
    assert bulk.outcome_of_status(status) is want


def test_valid_index_names() -> None:
    assert bulk.valid_index("logs-2026.01.01")
    for bad in ("", "Logs", "a b", "a/b", "_x", "-x", "a*", "x" * 256):
        assert not bulk.valid_index(bad)


@pytest.mark.parametrize(
    ("encoding", "doc"),
    [
        ({}, None),  # the default: the record Kafka gets, its timestamp renamed
        ({"codec": "raw"}, {"@timestamp": "2023-11-14T22:13:20.000000000Z", "message": 'say "hi"'}),
        (
            {"codec": "logfmt", "only_fields": ["message", "level"]},
            {"@timestamp": "2023-11-14T22:13:20.000000000Z", "message": 'message="say \\"hi\\"" level=info'},
        ),
        (
            {"only_fields": ["timestamp", "message"], "timestamp_format": "unix_ms"},
            {"@timestamp": 1_700_000_000_000, "message": 'say "hi"'},
        ),
        (
            {"except_fields": ["timestamp", "labels", "fields", "source_id"]},
            {"message": 'say "hi"', "level": "info", "source_type": "file"},
        ),
    ],
)
def test_the_document_is_made_by_the_encoding_block(
    encoding: dict[str, object], doc: dict[str, object] | None
) -> None:
    config = ElasticsearchSinkConfig.model_validate({"enabled": True, "encoding": encoding})
    chunk = file_chunk(['say "hi"'], 0)
    chunk.read_time_ns = 1_700_000_000 * 10**9
    chunk.levels = ["info"]
    docs = bulk.Documents(config)
    (record,) = docs.records(chunk, docs.values(chunk))
    if doc is None:
        whole = orjson.loads(encode_chunk(chunk, None)[0])
        whole["@timestamp"] = whole.pop("timestamp")
        assert orjson.loads(record.value) == whole
        assert record.value.startswith(b'{"@timestamp":')
    else:
        assert orjson.loads(record.value) == doc
    assert record.key == ids_of(chunk)[0]  # the same _id whatever the codec


def test_a_bad_encoding_is_refused_with_its_key() -> None:
    with pytest.raises(ValueError, match=r"encoding\.only_fields does not apply to codec: raw"):
        ElasticsearchSinkConfig.model_validate({"encoding": {"codec": "raw", "only_fields": ["message"]}})
