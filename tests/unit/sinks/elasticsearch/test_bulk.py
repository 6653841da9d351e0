"""Documents, ids, request bodies and what answers mean (no server: the real-server behaviour is
in tests/integration/sinks/elasticsearch and the conformance suite)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import random

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


# -- the C body against the Python reference ---------------------------------------------------------
_ODD = [
    "",
    "x",
    'q"uote',
    "back\\slash",
    "ctl\x00\x01\x1f\x7f",
    "nl\n\r\t\b\f",
    "caf\u00e9",
    "\u65e5\U0001f600",
]


def _records(rng: random.Random, n: int) -> list[Record]:
    out = []
    for i in range(n):
        index = rng.choice(["logs-2026.12.06", "logs-2026.12.07", *_ODD[1:]])
        key: str | bytes | None = rng.choice([None, f"id{i}", rng.choice(_ODD), rng.choice(_ODD).encode()])
        size = rng.choice([0, 1, 150, 70_000])
        value = orjson.dumps({"message": "".join(rng.choice(_ODD) for _ in range(size // 8)), "n": i})
        out.append(Record(index, value, key))
    return out


@pytest.mark.parametrize("op_type", ["create", "index"])
@pytest.mark.parametrize(("pipeline", "doc_type"), [("", ""), ("ingest-\u00e9", "_doc"), ('p"1', "")])
def test_c_body_is_the_python_body(op_type: str, pipeline: str, doc_type: str) -> None:
    rng = random.Random(f"{op_type}{pipeline}{doc_type}")
    for n in (0, 1, 7, 600):
        records = _records(rng, n)
        got = bulk._speedups.bulk_body(Record, records, op_type, pipeline, doc_type, orjson.dumps)
        assert got == bulk.body_py(records, op_type, pipeline, doc_type)
        assert bulk.body(records, op_type, pipeline, doc_type) == got
        lines = got.split(b"\n")
        assert len(lines) == 2 * n + 1 and lines[-1] == b""
        for r, act, src in zip(records, lines[0:-1:2], lines[1:-1:2], strict=True):
            meta = orjson.loads(act)[op_type]
            assert meta["_index"] == r.topic and src == r.value
            assert meta.get("_id") == (r.key.decode() if isinstance(r.key, bytes) else r.key)


def test_c_body_refuses_what_the_python_body_refuses() -> None:
    bad = [Record("ix", b"{}", b"\xff")]  # a key that is not UTF-8
    with pytest.raises(UnicodeDecodeError):
        bulk.body_py(bad, "create", "", "")
    with pytest.raises(UnicodeDecodeError):
        bulk._speedups.bulk_body(Record, bad, "create", "", "", orjson.dumps)
    with pytest.raises(TypeError):
        bulk._speedups.bulk_body(Record, [("ix", b"{}", None)], "create", "", "", orjson.dumps)
    with pytest.raises(TypeError):
        bulk._speedups.bulk_body(Record, [Record("ix", b"{}", 5)], "create", "", "", orjson.dumps)  # type: ignore[arg-type]


def _spec_ids(base: bytes, start: int, lines: list[bytes]) -> list[str]:
    """The exact-position ids as documented: BLAKE2b, 15 bytes, of base + offset + line (hashlib)."""
    out, pos = [], start
    for data in lines:
        h = hashlib.blake2b(base + pos.to_bytes(8, "little") + data, digest_size=15)
        out.append(base64.urlsafe_b64encode(h.digest()).decode())
        pos += len(data) + 1
    return out


def test_c_ids_are_blake2b_of_the_position_as_documented() -> None:
    rng = random.Random(7)
    # Lengths around BLAKE2b's 128-byte blocks (base + 8-byte offset + line).
    sizes = [0, 1, 50, 95, 96, 97, 103, 111, 112, 119, 120, 127, 128, 129, 240, 255, 256, 257, 5000]
    for trial in range(200):
        base = bytes(rng.randrange(256) for _ in range(rng.choice([0, 3, 25, 119, 120, 128, 200])))
        lines = [bytes(rng.randrange(256) for _ in range(rng.choice(sizes))) for _ in range(rng.randrange(8))]
        start = rng.choice([0, 1, 2**32, 2**62])
        assert bulk._speedups.doc_ids_at(base, start, lines) == _spec_ids(base, start, lines), trial


def test_exact_position_ids_are_the_same_with_and_without_the_c_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = ["", "plain", "caf\u00e9 \u65e5", "\udcff lone", "x" * 300, *LINES]
    encoded = [ln.encode("utf-8", "surrogatepass") for ln in lines]
    chunk = Chunk(Origin("file", "/var/log/app.log"), lines, 12345, 12345 + sum(len(e) + 1 for e in encoded))
    chunk.stream, chunk.levels = "8:42", [""] * len(lines)
    o = chunk.origin
    base = f"{o.source_type}\0{o.source_id}\0{chunk.stream}\0".encode()
    got = bulk.doc_ids(chunk, encoded)
    monkeypatch.setattr(bulk, "_speedups", None)
    assert bulk.doc_ids(chunk, encoded) == got == _spec_ids(base, 12345, encoded)


def test_kafka_ids_are_blake2b_of_the_offset_with_and_without_the_c_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offsets = [0, 1, 255, 256, 2**31, 2**32 + 7, 2**63 - 1, 2**64 - 1, *range(1000, 1100, 3)]
    chunk = Chunk(Origin("kafka", "logs"), ["x"] * len(offsets))
    chunk.stream, chunk.offsets = "logs:3", offsets
    base = b"kafka\0logs:3\0"
    digests = [hashlib.blake2b(base + o.to_bytes(8, "little"), digest_size=15).digest() for o in offsets]
    spec = [base64.urlsafe_b64encode(d).decode() for d in digests]
    got = bulk.doc_ids(chunk)
    assert got == spec
    assert bulk._speedups.doc_ids_offsets(base, []) == []
    for bad in ([-1], [2**64]):
        with pytest.raises(OverflowError):
            bulk._speedups.doc_ids_offsets(base, bad)
    with pytest.raises(TypeError):
        bulk._speedups.doc_ids_offsets(base, ["7"])  # type: ignore[list-item]
    monkeypatch.setattr(bulk, "_speedups", None)
    assert bulk.doc_ids(chunk) == spec


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (b'{"errors":false}', True),
        (b'{"errors":false,"items":[{"create":{"status":201}}]}', True),
        (b'{"took":13,"errors":false,"items":[{"create":{"status":201}}]}', True),
        (b' {\n  "took" : 3,\n  "errors" : false,\n  "items" : []\n}', True),
        (b'{"took":13,"errors":true,"items":[{"create":{"status":429}}]}', False),
        (b'{"errors":true,"items":[{"create":{"status":201,"errors":false}}]}', False),
        (b'{"items":[],"errors":false}', False),  # not at the start: parsed, not guessed
        (b'{"took":1,"errors":falsely}', False),
        (b'{"error":{"type":"x"},"errors":false}', False),
        (b"", False),
        (b"not json", False),
    ],
)
def test_all_delivered_reads_only_a_top_level_errors_false(raw: bytes, want: bool) -> None:
    assert bulk.all_delivered(raw) is want
    if want:  # what the parsed answer says too
        assert bulk.parse_response(raw)["errors"] is False


# -- the documents' columns: the C body against the Python reference ---------------------------------
def _columns(rng: random.Random, n: int) -> tuple[str | list[str], list[bytes], list[str] | None]:
    records = _records(rng, n)
    index: str | list[str] = (
        rng.choice(["logs", *_ODD[1:]]) if rng.random() < 0.5 else [r.topic for r in records]
    )
    values = []
    for r in records:
        # Most documents start as the encoder writes them; some do not (a selection left it out).
        head = bulk.TIMESTAMP_HEAD if rng.random() < 0.8 else b"{"
        values.append(head + r.value[1:])
    ids = None if rng.random() < 0.3 else [rng.choice([f"id{i}", *_ODD]) for i in range(n)]
    return index, values, ids


@pytest.mark.parametrize("rename", [b"", b'{"@timestamp":', b'{"t\\u00e9":'])
@pytest.mark.parametrize(("op_type", "pipeline", "doc_type"), [("create", "", ""), ("index", 'p"1', "_doc")])
def test_c_documents_body_is_the_python_body(
    rename: bytes, op_type: str, pipeline: str, doc_type: str
) -> None:
    rng = random.Random(f"{rename!r}{op_type}")
    for n in (0, 1, 2, 9, 300):
        index, values, ids = _columns(rng, n)
        docs = bulk.Docs(index, values, ids, rename)
        for lo, hi in {(0, n), (0, n // 2), (n // 3, n), (n // 2, n // 2), (n // 4, n - n // 4)}:
            want = bulk.docs_body_py(docs, lo, hi, op_type, pipeline, doc_type)
            got = bulk._speedups.bulk_docs(
                index, values, ids, lo, hi, op_type, pipeline, doc_type, rename, orjson.dumps
            )
            assert got == want, (n, lo, hi)
            assert docs.body(lo, hi, op_type, pipeline, doc_type) == got
        # The body of the documents is the body of their records.
        assert docs.body(0, n, op_type, pipeline, doc_type) == bulk.body_py(
            docs.records(), op_type, pipeline, doc_type
        )
        for i, r in enumerate(docs.records()):
            renamed = rename and values[i].startswith(bulk.TIMESTAMP_HEAD)
            assert r.value == (rename + values[i][len(bulk.TIMESTAMP_HEAD) :] if renamed else values[i])
            assert r.key == (ids[i] if ids is not None else None)


def test_c_documents_body_refuses_bad_columns() -> None:
    args = ("create", "", "", b"", orjson.dumps)
    with pytest.raises(TypeError):
        bulk._speedups.bulk_docs(5, [b"{}"], None, 0, 1, *args)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bulk._speedups.bulk_docs(["ix", 5], [b"{}", b"{}"], None, 0, 2, *args)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        bulk._speedups.bulk_docs("ix", [b"{}", "{}"], None, 0, 2, *args)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        bulk._speedups.bulk_docs("ix", [b"{}"], [5], 0, 1, *args)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="one length"):
        bulk._speedups.bulk_docs(["ix"], [b"{}", b"{}"], None, 0, 2, *args)
    with pytest.raises(ValueError, match="one length"):
        bulk._speedups.bulk_docs("ix", [b"{}", b"{}"], ["a"], 0, 2, *args)
    for lo, hi in ((-1, 1), (0, 3), (2, 1)):
        with pytest.raises(IndexError):
            bulk._speedups.bulk_docs("ix", [b"{}", b"{}"], None, lo, hi, *args)
    with pytest.raises(UnicodeDecodeError):
        bulk._speedups.bulk_docs("ix", [b"{}"], [b"\xff"], 0, 1, *args)  # type: ignore[list-item]


def test_c_ids_of_str_lines_are_those_of_their_utf8_bytes() -> None:
    rng = random.Random(11)
    alphabet = ["a", "\u00e9", "\u65e5", "\U0001f600", "\udcff", "\ud800", "\x00", "\n"]
    for _ in range(200):
        lines = [
            "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 60, 130, 300]))) for _ in range(5)
        ]
        encoded = [ln.encode("utf-8", "surrogatepass") for ln in lines]
        base = bytes(rng.randrange(256) for _ in range(rng.choice([0, 30, 128])))
        assert bulk._speedups.doc_ids_at(base, 77, lines) == bulk._speedups.doc_ids_at(base, 77, encoded)
    with pytest.raises(TypeError):
        bulk._speedups.doc_ids_at(b"", 0, [5])  # type: ignore[list-item]


def test_ids_need_no_encoded_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = ["plain", "caf\u00e9", "\udcff lone", *LINES]
    end = 500 + sum(len(s.encode("utf-8", "surrogatepass")) + 1 for s in lines)
    chunk = Chunk(Origin("file", "/var/log/app.log"), lines, 500, end)
    got = bulk.doc_ids(chunk)
    assert got == bulk.doc_ids(chunk, [s.encode("utf-8", "surrogatepass") for s in lines])
    monkeypatch.setattr(bulk, "_speedups", None)
    assert bulk.doc_ids(chunk) == got


def test_documents_of_a_chunk_are_its_records() -> None:
    config = ElasticsearchSinkConfig(enabled=True, index="logs-%Y.%m.%d", timestamp_field="@timestamp")
    chunk = file_chunk(LINES, 0)
    documents = bulk.Documents(config)
    docs = documents.docs(chunk)
    assert isinstance(docs.index, str)  # one time, no field chooses: one name for every document
    records = documents.records(chunk, encode_chunk(chunk, None))
    assert docs.records() == records
    assert docs.counts() == {records[0].topic: len(LINES)}
    assert docs.nbytes == sum(len(r.value) for r in records)
    assert (
        docs.size(0, len(LINES)) == docs.size(0, 3) + docs.size(3, len(LINES)) == sum(map(len, docs.values))
    )


def test_ids_of_kafka_records_come_from_topic_partition_and_offset() -> None:
    from log_capturer.record import Chunk, Origin
    from log_capturer.sinks.elasticsearch.bulk import doc_ids

    a = Chunk(Origin("kafka", "logs"), ["x", "y"])
    a.stream, a.offsets = "logs:3", [7, 8]
    # The same records read again in another chunk, with another origin and text: the same ids.
    b = Chunk(Origin("app", "other"), ["y2"])
    b.stream, b.offsets = "logs:3", [8]
    c = Chunk(Origin("kafka", "logs"), ["y"])
    c.stream, c.offsets = "logs:4", [8]
    ids = doc_ids(a)
    assert len(set(ids)) == 2
    assert doc_ids(b) == ids[1:]
    assert doc_ids(c) != ids[1:]
