"""The Kafka source's fast path gives exactly the chunks of the general path (``Records.chunks``
then the metadata moved), or declines (None) and leaves the batch to it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk
from log_capturer.sources.kafka.columns import agent_chunks
from log_capturer.sources.kafka.config import KafkaSourceConfig
from log_capturer.sources.kafka.source import KafkaSource
from tests.unit.sources.harness import MemorySink, make_dispatcher

TP = ("logs", 1)


def msgs(values: list[Any], headers: bool = False) -> list[Message]:
    out = []
    for i, v in enumerate(values):
        value = v if isinstance(v, bytes) else orjson.dumps(v)
        out.append(
            Message(
                topic=TP[0],
                partition=TP[1],
                offset=100 + i,
                key=f"k{i}".encode() if i % 2 else None,
                value=value,
                headers=[("h", f"v{i}".encode())] if headers and i % 3 == 0 else None,
                timestamp=(1, 1_700_000_000_000 + i) if i % 4 else (0, -1),
            )
        )
    return out


def agent(i: int, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "timestamp": f"2026-12-01T10:00:{i % 60:02d}.{i:09d}Z",
        "message": f"line {i}",
        "level": ("info", "WARNING", "", "error", "critical")[i % 5],
        "source_type": "file",
        "source_id": f"/var/log/app{i % 2}.log",
        "labels": {"app": "shop"},
        "fields": ({"user": "u1"}, {}, None, {"kafka": {"offset": 1}, "n": i})[i % 4],
    }
    rec.update(over)
    return rec


def source(**cfg: Any) -> KafkaSource:
    metrics = Metrics()
    sink = MemorySink()
    return KafkaSource(KafkaSourceConfig(enabled=True, **cfg), make_dispatcher(sink, metrics), metrics)


def general(src: KafkaSource, messages: list[Message]) -> list[Chunk]:
    chunks, rejected = src.records.chunks(
        src._items(TP, messages),
        src._origin(TP),
    )
    assert rejected == []
    for c in chunks:
        src._finish_chunk(c, TP)
    return chunks


def shape(chunks: list[Chunk]) -> list[tuple[Any, ...]]:
    return [
        (
            (c.origin.source_type, c.origin.source_id, c.origin.labels, c.origin.pipeline),
            c.lines,
            orjson.dumps(c.meta),
            c.preset_levels,
            # The read time where a record has no time of its own: "now", when each was made.
            [("now" if s == c.read_time_ns else s) for s in c.timestamps or []],
            c.offsets,
            c.stream,
        )
        for c in chunks
    ]


CASES = {
    "agent records, several sources, levels that are not one": [agent(i) for i in range(40)],
    "labels apart per source": [agent(i, labels={"app": "shop", "team": str(i % 2)}) for i in range(10)],
    "no source members, other keys": [{"msg": f"m {i}\n", "severity": i % 8} for i in range(9)],
    "times of other shapes": [
        {
            "message": f"m{i}",
            "time": ("2026-12-01T10:00:00Z", 1_700_000_000_123, "2026-12-01T10:00:00.5+01:00")[i % 3],
        }
        for i in range(9)
    ],
    "levels of every type": [
        {"message": f"m{i}", "level": (None, 3, True, [1], "warn", 30.0)[i % 6]} for i in range(12)
    ],
    "only a message": [{"log": f"m{i}"} for i in range(5)],
    # Uniform records (read in C): one fields object, escapes, levels that are not one.
    "agent records of one source": [agent(i, source_id="/a.log", fields={"user": "u1"}) for i in range(12)],
    "agent records without fields, escaped messages": [
        agent(i, source_id="/a.log", fields=None, message=f'{{"m":"\\t{i}\\"}}\n\té') for i in range(12)
    ],
    "agent records, empty fields, numeric level in one": [
        agent(i, source_id="/a.log", fields={}, level=3 if i == 5 else "info") for i in range(8)
    ],
    "agent records, one message with a \\u escape": [
        agent(i, source_id="/a.log", fields={}, message="\x01" if i == 3 else "m") for i in range(8)
    ],
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("headers", [False, True])
def test_the_fast_path_gives_the_general_paths_chunks(name: str, headers: bool) -> None:
    values = CASES[name]
    fast_src, slow_src = source(), source()
    fast = agent_chunks(
        fast_src.records,
        fast_src._origin(TP),
        "kafka",
        TP,
        msgs(values, headers),
        "auto",
    )
    assert fast is not None
    assert shape(fast) == shape(general(slow_src, msgs(values, headers)))


DECLINED: dict[str, list[Any]] = {
    "not all JSON": [agent(0), b"plain text"],
    "leading space": [b' {"message": "x"}'],
    "members differ": [agent(0), {"message": "x"}],
    "an extra member": [{"message": "x", "user": "u"}],
    "an empty message": [{"message": " "}],
    "a message that is not text": [{"message": 1}],
    "a time that does not parse": [{"message": "x", "timestamp": "yesterday"}],
    "labels differ within a source": [agent(0), agent(2, labels={"app": "other"})],
    "fields that are not an object": [{"message": "x", "fields": [1]}],
    "an invalid source_id": [{"message": "x", "source_id": ""}],
    "an array": [b"[1]"],
}


@pytest.mark.parametrize("name", list(DECLINED))
def test_what_needs_a_record_by_record_decision_is_left_to_the_general_path(name: str) -> None:
    src = source()
    assert agent_chunks(src.records, src._origin(TP), "kafka", TP, msgs(DECLINED[name]), "auto") is None


def test_uniform_records_are_read_without_orjson_per_record(monkeypatch: pytest.MonkeyPatch) -> None:
    from log_capturer.sources.kafka import columns

    calls: list[bytes] = []

    def counting(value: bytes) -> Any:
        calls.append(value)
        return orjson.loads(value)

    monkeypatch.setattr(columns, "_loads", counting)
    values = CASES["agent records of one source"]
    src = source()
    fast = agent_chunks(src.records, src._origin(TP), "kafka", TP, msgs(values), "auto")
    assert fast is not None and len(calls) == 1  # the first record only
    assert shape(fast) == shape(general(source(), msgs(values)))


def test_raw_is_never_the_fast_paths() -> None:
    src = source(format="raw")
    assert agent_chunks(src.records, src._origin(TP), "kafka", TP, msgs([agent(0)]), "raw") is None


@pytest.mark.parametrize("fields", [None, {}])
def test_agent_records_without_fields_keep_their_metadata_as_columns(fields: Any) -> None:
    from log_capturer.sinks.kafka.encode import encode_chunk

    values = [agent(i, source_id="/a.log", fields=fields, level="info") for i in range(24)]
    src = source()
    fast = agent_chunks(src.records, src._origin(TP), "kafka", TP, msgs(values), "auto")
    slow = general(source(), msgs(values))
    assert fast is not None and all(c.meta_columns is not None for c in fast)
    for c in [*fast, *slow]:
        c.levels = [lv or "info" for lv in c.preset_levels or ["info"] * len(c.lines)]
    # The records a sink encodes from the columns are those of the general path's dicts ...
    assert [encode_chunk(c, None) for c in fast] == [encode_chunk(c, None) for c in slow]
    # ... and reading meta makes those dicts (then the columns are gone).
    assert shape(fast) == shape(slow)
    assert all(c.meta_columns is None for c in fast)


def test_records_with_headers_or_fields_get_their_metadata_as_dicts() -> None:
    values = [agent(i, source_id="/a.log", fields=None, level="info") for i in range(6)]
    src = source()
    fast = agent_chunks(src.records, src._origin(TP), "kafka", TP, msgs(values, headers=True), "auto")
    assert fast is not None and all(c.meta_columns is None and c.meta is not None for c in fast)
    assert shape(fast) == shape(general(source(), msgs(values, headers=True)))
    values = [agent(i, source_id="/a.log", fields={"user": "u1"}, level="info") for i in range(6)]
    fast = agent_chunks(src.records, src._origin(TP), "kafka", TP, msgs(values), "auto")
    assert fast is not None and all(c.meta_columns is None for c in fast)
