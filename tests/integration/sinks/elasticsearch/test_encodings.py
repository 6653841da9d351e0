"""``sinks.elasticsearch.encoding``: every codec's documents read back from the real OpenSearch
node, and a parked document replayed as the very document it would have been."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.devtools.opensearch_local import LocalOpenSearch
from log_capturer.record import Chunk, Origin
from log_capturer.reliability.dlq.replay import record_of
from log_capturer.sinks.encoding import rfc3339_ns
from tests.conformance.harness_elasticsearch import ElasticsearchHarness, read_index
from tests.conformance.test_sink_conformance import Rig
from tests.integration.sinks.elasticsearch.test_indices import ship

pytestmark = pytest.mark.integration

LINES = ['GET /a 200 "ok"', "été ✓ level=info", "x=1 back\\slash", "plain words"]
STAMPS = [1_700_000_000_123_456_789 + i for i in range(len(LINES))]
ORIGIN = Origin("file", "/var/log/app.log", {"app": "shop", "team": "core"})


@pytest.fixture
def harness(opensearch: LocalOpenSearch) -> Iterator[ElasticsearchHarness]:
    h = ElasticsearchHarness(opensearch)
    try:
        yield h
    finally:
        opensearch.request("DELETE", f"/{h.index}*")


def chunk(analysed: bool = False) -> Chunk:
    c = Chunk(ORIGIN, list(LINES))
    c.timestamps = list(STAMPS)
    if analysed:
        c.levels = [""] * len(LINES)  # what a chunk parked before its analysis is given
    return c


def documents(
    harness: ElasticsearchHarness,
    opensearch: LocalOpenSearch,
    tmp_path: Path,
    encoding: dict[str, Any],
    **extra: Any,
) -> list[dict[str, Any]]:
    with Rig(harness, tmp_path, {"encoding": encoding, **extra}) as rig:
        ship(rig, [chunk()])
    docs = read_index(opensearch, harness.index)
    assert len(docs) == len(LINES), docs
    for d in docs:
        d.pop("_id")
    return sorted(docs, key=lambda d: (str(d.get("@timestamp", "")), d["message"]))


def parse_logfmt(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pos = 0
    pair = re.compile(r'([^ ="]+)=("(?:[^"\\]|\\.)*"|[^ "=]*)(?: |$)')
    while pos < len(text):
        m = pair.match(text, pos)
        assert m, f"not logfmt at {pos}: {text!r}"
        value = m.group(2)
        out[m.group(1)] = orjson.loads(value) if value.startswith('"') else value
        pos = m.end()
    return out


def test_raw_puts_the_line_as_read_in_message(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    docs = documents(harness, opensearch, tmp_path, {"codec": "raw"})
    assert docs == [
        {"@timestamp": rfc3339_ns(ns), "message": line} for ns, line in zip(STAMPS, LINES, strict=True)
    ]


def test_logfmt_puts_the_record_as_logfmt_in_message(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    docs = documents(
        harness, opensearch, tmp_path, {"codec": "logfmt", "only_fields": ["message", "level", "labels.app"]}
    )
    assert [set(d) for d in docs] == [{"@timestamp", "message"}] * len(LINES)
    assert [parse_logfmt(d["message"]) for d in docs] == [
        {"message": line, **({"level": "info"} if "level=info" in line else {}), "labels.app": "shop"}
        for line in LINES
    ]


def test_json_with_paths_and_unix_ms(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    enc = {"only_fields": ["timestamp", "message", "labels.team"], "timestamp_format": "unix_ms"}
    docs = documents(harness, opensearch, tmp_path, enc)
    assert docs == sorted(
        (
            {"@timestamp": ns // 1_000_000, "message": line, "labels": {"team": "core"}}
            for ns, line in zip(STAMPS, LINES, strict=True)
        ),
        key=lambda d: d["message"],
    )  # a number: the same millisecond for every line


def test_json_without_its_timestamp_keeps_the_field_name_alone(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    docs = documents(harness, opensearch, tmp_path, {"except_fields": ["timestamp", "labels", "fields"]})
    assert sorted(d["message"] for d in docs) == sorted(LINES)
    assert all("@timestamp" not in d and "timestamp" not in d and "labels" not in d for d in docs), docs


@pytest.mark.parametrize(
    "encoding", [{"codec": "raw"}, {"codec": "logfmt"}, {"except_fields": ["labels.app"]}]
)
def test_a_parked_document_is_replayed_as_it_would_have_been_sent(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path, encoding: dict[str, Any]
) -> None:
    with Rig(harness, tmp_path, {"encoding": encoding}) as rig:
        expected = [r.value for r in rig.sink.service.records_of(chunk(analysed=True))]  # type: ignore[attr-defined]
        assert rig.sink.dead_letter([chunk()], "backpressure", "overflow for the test")
        entries = rig.store.select(due_only=False)
        assert len(entries) == len(LINES)
        outcome = rig.sink.replay([record_of(e) for e in entries], timeout=30)  # type: ignore[attr-defined]
    assert outcome == {e["entry_id"]: None for e in entries}
    docs = read_index(opensearch, harness.index)
    for d in docs:
        d.pop("_id")
    assert sorted(orjson.dumps(d) for d in docs) == sorted(orjson.dumps(orjson.loads(v)) for v in expected)
