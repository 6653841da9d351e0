"""``sinks.kafka.encoding``: every codec read back from the real broker, with level routing, keys
and headers; a raw record parked in the DLQ is replayed byte for byte (issue 22)."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.reliability.test_dlq_replay import cli, shipped_topics
from tests.integration.sinks.kafka.util import ship_lines
from tests.integration.test_file_to_kafka import LEVEL_TOPIC, make_line
from tests.support import (
    AgentProcess,
    Rec,
    agent_config,
    consume_all,
    create_prefixed_topics,
    parse_logfmt,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

LABELS = {"env": "prod", "team": "a b"}
HEADERS = ["level", "source_type", "source_id", "labels"]
EXTRA = ['été ✓ "quoted" back\\slash \U0001f600 level=info', "   leading and trailing spaces   ", "x"]


def lines_and_expectations(n: int) -> tuple[list[str], dict[str, tuple[str, str | None]]]:
    expected: dict[str, tuple[str, str | None]] = {}
    for i in range(n):
        line, level, key = make_line("enc", i)
        expected[line] = (level, key)
    expected[EXTRA[0]] = ("info", None)
    expected[EXTRA[1]] = ("", None)
    expected[EXTRA[2]] = ("", None)
    return list(expected), expected


def message_of(codec: str, rec: Rec) -> str:
    if codec == "raw":
        return rec.value.decode()
    if codec == "logfmt":
        return parse_logfmt(rec.value)["message"]
    return str(rec.json()["message"])


@pytest.mark.parametrize("codec", ["json", "raw", "logfmt"])
def test_every_codec_arrives_routed_keyed_and_with_its_headers(
    codec: str, tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines, expected = lines_and_expectations(400)
    source = str(tmp_path / "logs" / "app.log")
    records, _ = ship_lines(
        tmp_path,
        bootstrap,
        topics,
        lines,
        sinks={"kafka": {"encoding": {"codec": codec}, "headers": HEADERS}},
        files_config={"labels": LABELS},
    )
    by_topic = {v: k for k, v in topics.items()}
    assert len(records) == len(lines)
    seen = set()
    for rec in records:
        line = message_of(codec, rec)
        seen.add(line)
        level, key = expected[line]
        assert by_topic[rec.topic] == LEVEL_TOPIC[level], (line, rec.topic)
        assert rec.key == (key or source).encode()
        headers = dict(rec.headers)
        assert headers == {
            "level": level.encode(),
            "source_type": b"file",
            "source_id": source.encode(),
            "labels": orjson.dumps(LABELS),
        }
        if codec == "raw":
            assert rec.value == line.encode()  # the line as written, nothing added
        elif codec == "json":
            doc = rec.json()
            assert (doc["level"], doc["source_id"], doc["labels"]) == (level, source, LABELS)
            assert doc["fields"] == ({"tenant_id": key} if key else {})
        else:
            doc = parse_logfmt(rec.value)
            assert doc.get("level", "") == level
            assert (doc["source_type"], doc["source_id"]) == ("file", source)
            assert (doc["labels.env"], doc["labels.team"]) == ("prod", "a b")
            assert doc.get("fields.tenant_id") == key
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", doc["timestamp"])
    assert seen == set(lines)


def test_raw_records_with_headers_are_the_same_through_the_chunk_producer_and_confluent_kafka(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    """The chunk producer in C sends a chunk with headers record by record with headers built in
    C; confluent-kafka's producer (``native_producer: false``) is the Python path. Read back from
    the broker, both put the same records in the same partitions in the same order: topic, key,
    value and headers. Both runs read the same path (a line without a key of its own is keyed by
    it), one after the other. A third run without headers goes through the chunk producer's batch
    path, which partitions the keyed records in C (murmur2, each partition's records enqueued at
    once): the same keys and values in the same partitions in the same order."""
    lines, _ = lines_and_expectations(3000)
    contents: dict[str, dict[tuple[str, int], list[tuple[Any, ...]]]] = {}
    for run in ("c", "py", "c-no-headers"):
        tmp = tmp_path / "run"
        if tmp.exists():
            tmp.rename(tmp_path / f"before-{run}")
        tmp.mkdir()
        topics = create_prefixed_topics(bootstrap, f"{topic_prefix}-{run}")
        kafka: dict[str, Any] = {"encoding": {"codec": "raw"}, "native_producer": run != "py"}
        if run != "c-no-headers":
            kafka["headers"] = HEADERS
        records, _ = ship_lines(
            tmp, bootstrap, topics, lines, sinks={"kafka": kafka}, files_config={"labels": LABELS}
        )
        by_topic = {v: k for k, v in topics.items()}
        runs: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
            runs.setdefault((by_topic[r.topic], r.partition), []).append((r.key, r.value, r.headers))
        contents[run] = runs
    assert sum(map(len, contents["c"].values())) == len(lines)
    assert len(contents["c"]) > 4, "several topics and partitions"
    assert contents["c"] == contents["py"]
    plain = contents["c-no-headers"]
    assert not any(h for recs in plain.values() for _, _, h in recs)
    assert {tp: [(k, v) for k, v, _ in recs] for tp, recs in plain.items()} == {
        tp: [(k, v) for k, v, _ in recs] for tp, recs in contents["py"].items()
    }


def test_json_with_only_some_fields_and_unix_milliseconds(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines, expected = lines_and_expectations(50)
    encoding = {
        "codec": "json",
        "only_fields": ["timestamp", "message", "level"],
        "timestamp_format": "unix_ms",
    }
    records, _ = ship_lines(tmp_path, bootstrap, topics, lines, sinks={"kafka": {"encoding": encoding}})
    assert len(records) == len(lines)
    for rec in records:
        doc = rec.json()
        assert list(doc) == ["timestamp", "message", "level"]
        assert isinstance(doc["timestamp"], int) and doc["timestamp"] > 1_700_000_000_000
        assert doc["level"] == expected[doc["message"]][0]


def test_paths_into_labels_and_fields_keep_just_those_parts(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines, expected = lines_and_expectations(50)
    encoding = {"codec": "json", "only_fields": ["message", "fields.tenant_id", "labels.env"]}
    records, _ = ship_lines(tmp_path, bootstrap, topics, lines, sinks={"kafka": {"encoding": encoding}})
    assert len(records) == len(lines)
    keyed = 0
    for rec in records:
        doc = rec.json()
        key = expected[doc["message"]][1]
        fields = {"fields": {"tenant_id": key}} if key is not None else {}
        keyed += bool(fields)
        assert doc == {"message": doc["message"], **fields}, doc  # no labels.env on these lines
    assert keyed


BIG = "ERROR  raw   " + "payload é " * 700  # about 7,700 bytes: larger than 4,096


def test_a_raw_record_parked_in_the_dlq_is_replayed_exactly_as_it_would_have_been_sent(
    tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines = [f"INFO before {i}" for i in range(20)] + [BIG] + [f"INFO after {i}" for i in range(20)]
    kafka: dict[str, Any] = {"max_message_bytes": 4096, "encoding": {"codec": "raw"}, "headers": HEADERS}
    cfg = agent_config(
        tmp_path,
        bootstrap,
        topics,
        sinks={"kafka": kafka},
        files_config={"labels": LABELS},
        dispatcher={"dlq_config": {"reprocessing_config": {"enabled": False}}},
    )
    small = write_config(tmp_path / "config.yaml", cfg)
    cfg["sinks"]["kafka"]["max_message_bytes"] = 16384
    raised = write_config(tmp_path / "raised.yaml", cfg)
    (tmp_path / "logs" / "app.log").write_text("".join(f"{line}\n" for line in lines))
    agent = AgentProcess(small, tmp_path / "agent.log").start()
    try:
        first = consume_all(bootstrap, shipped_topics(topics), expected=40)
        wait_until(lambda: agent.get("/dlq/stats")["entries"] == 1, 30, "the parked line")
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    [entry] = [json.loads(x) for x in cli("dlq", "list", "-c", str(small), "--json").stdout.splitlines()]
    assert entry["value"] == BIG and entry["original_entry"] == {"raw": BIG}
    source = str(tmp_path / "logs" / "app.log")
    sent_headers = {
        "level": b"error",
        "source_type": b"file",
        "source_id": source.encode(),
        "labels": orjson.dumps(LABELS),
    }
    assert {k: v.encode() for k, v in entry["headers"]} == sent_headers
    replayed = cli("dlq", "replay", "-c", str(raised), "--no-progress")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "1 delivered" in replayed.stdout
    final = consume_all(bootstrap, shipped_topics(topics), expected=41)
    assert sorted(r.value for r in first) == sorted(x.encode() for x in lines if x != BIG)
    [big] = [r for r in final if r.value == BIG.encode()]
    assert big.topic == topics["logs-high-priority"]
    assert big.key == source.encode()
    assert dict(big.headers) == sent_headers
    # A sent record and the replayed one are alike: the same value type, the same headers.
    [before] = [r for r in first if r.value == b"INFO before 0"]
    assert set(dict(before.headers)) == set(sent_headers)
