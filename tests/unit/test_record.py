"""Chunks: their size in UTF-8 bytes, the same from the C helper and from its Python twin."""

from __future__ import annotations

import random

import orjson
import pytest

from log_capturer import record
from log_capturer.record import Chunk, ChunkGroup, Origin

ORIGIN = Origin("file", "/a.log")

LINES = [
    "",
    "plain ascii",
    "é",
    "naïve café 日本語 🙂",
    "\udcff lone surrogate from surrogateescape",
    "\U0010ffff",
    "x" * 5000 + "é",
]


def python_text_bytes(lines: list[str]) -> int:
    return sum(len(s.encode("utf-8", "surrogatepass")) for s in lines)


def test_text_bytes_is_the_utf8_size_of_the_lines() -> None:
    assert Chunk(ORIGIN, LINES).text_bytes == python_text_bytes(LINES)
    assert Chunk(ORIGIN, ["é" * 40]).text_bytes == 80
    assert record.text_bytes_py(LINES) == python_text_bytes(LINES)


def test_the_c_helper_and_the_fallback_agree_on_random_text() -> None:
    from log_capturer import _speedups

    rng = random.Random(7)
    alphabet = 'aé日🙂\udc80\n"\\' + "".join(map(chr, range(32, 127)))
    for _ in range(200):
        lines = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60))) for _ in range(20)]
        assert _speedups.text_bytes(lines) == python_text_bytes(lines) == record.text_bytes_py(lines)


def test_text_bytes_refuses_what_is_not_a_list_of_str() -> None:
    from log_capturer import _speedups

    with pytest.raises(TypeError):
        _speedups.text_bytes(["ok", b"bytes"])


def test_kafka_meta_columns_encode_as_their_dicts_with_and_without_the_c_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from log_capturer.record import KafkaMeta

    keys = [None, "k", 'q"uo\\te', "caf\u00e9 \u65e5", "\\xff bad", "\x01ctl", None]
    ms = [1_700_000_000_000, None, 0, -1, 2**62, 5, None]
    offsets = [0, 1, 2**31, 2**40, 2**63 - 1, 77, 78]
    cols = KafkaMeta('ka"fka', 'to"pic\u00e9', 3, offsets, keys, ms)
    want = [orjson.dumps(d) for d in cols.dicts()]
    meta = {"topic": 'to"pic\u00e9', "partition": 3, "offset": 2**31, "key": 'q"uo\\te', "timestamp": 0}
    assert cols.dicts()[2] == {'ka"fka': meta}
    assert cols.encoded() == want
    monkeypatch.setattr(record, "_speedups", None)
    assert cols.encoded() == want


def test_chunk_meta_is_made_from_its_columns_once_and_a_set_meta_replaces_them() -> None:
    from log_capturer.record import KafkaMeta

    chunk = Chunk(Origin("kafka", "logs"), ["a", "b"])
    chunk.meta_columns = KafkaMeta("kafka", "logs", 0, [5, 6], [None, "k"], [None, 9])
    made = chunk.meta
    assert made == [
        {"kafka": {"topic": "logs", "partition": 0, "offset": 5, "key": None, "timestamp": None}},
        {"kafka": {"topic": "logs", "partition": 0, "offset": 6, "key": "k", "timestamp": 9}},
    ]
    assert chunk.meta_columns is None and chunk.meta is made
    chunk.meta_columns = KafkaMeta("kafka", "logs", 0, [5, 6], [None, None], [None, None])
    chunk.meta = None
    assert chunk.meta is None and chunk.meta_columns is None


def test_kafka_fields_refuses_what_is_not_an_offset_or_a_stamp() -> None:
    from log_capturer import _speedups

    with pytest.raises(ValueError):
        _speedups.kafka_fields(b"{", [1], [], [None], orjson.dumps)
    with pytest.raises(TypeError):
        _speedups.kafka_fields(b"{", ["1"], [None], [None], orjson.dumps)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        _speedups.kafka_fields(b"{", [1], [None], ["9"], orjson.dumps)  # type: ignore[list-item]
    with pytest.raises(OverflowError):
        _speedups.kafka_fields(b"{", [2**64], [None], [None], orjson.dumps)


def test_a_chunk_group_has_its_chunks_lines_and_acknowledges_each_in_full_once_all_are() -> None:
    a = Chunk(Origin("file", "/a.log"), ["a1", "a2"])
    b = Chunk(Origin("file", "/b.log"), ["b\u00e9"])
    a.levels, b.levels = ["info", "error"], ["warn"]
    done: list[str] = []
    for c in (a, b):
        c.expect(2 * len(c.lines), lambda c: done.append(c.origin.source_id))  # routed to two sinks
    group = ChunkGroup([a, b])
    assert (group.lines, group.levels, group.text_bytes) == (
        ["a1", "a2", "b\u00e9"],
        ["info", "error", "warn"],
        7,
    )
    assert group.read_time_ns == a.read_time_ns and group.chunks == [a, b]
    group.ack(2)
    assert (a.pending, b.pending) == (4, 2), "nothing acknowledged before the whole group is"
    group.ack(1)
    assert (a.pending, b.pending, done) == (2, 1, [])
    group.ack(1)  # past the whole: nothing more
    assert (a.pending, b.pending) == (2, 1)
    second = ChunkGroup([a, b])  # the other sink's group of the same chunks
    second.ack(3)
    assert (a.done, b.done, done) == (True, True, ["/a.log", "/b.log"])


def test_a_released_chunk_keeps_its_count_and_size_and_refuses_to_be_read() -> None:
    done: list[Chunk] = []
    chunk = Chunk(Origin("file", "/a.log"), ["a1", "b\u00e9"], start=0, end=7)
    chunk.expect(2, done.append)
    chunk.release_text()
    lines = chunk.lines
    assert isinstance(lines, record.ReleasedLines) and repr(lines) == "ReleasedLines(2)"
    assert (len(chunk), len(chunk.lines), bool(chunk.lines), chunk.text_bytes) == (2, 2, True, 5)
    for read in (lambda: chunk.lines[0], lambda: list(chunk.lines), lambda: "".join(chunk.lines)):
        with pytest.raises(RuntimeError, match="line text was released"):
            read()
    chunk.ack(2)  # acknowledgements count lines, not text
    assert done == [chunk]


def test_a_released_chunk_group_still_acknowledges_each_chunk_in_full() -> None:
    a = Chunk(Origin("file", "/a.log"), ["a1", "a2"])
    b = Chunk(Origin("file", "/b.log"), ["b1"])
    a.levels, b.levels = ["info", "info"], ["warn"]
    for c in (a, b):
        c.expect(len(c.lines), None)
    group = ChunkGroup([a, b])
    group.release_text()
    a.release_text()
    group.ack(3)
    assert (a.done, b.done, len(group.lines), group.text_bytes) == (True, True, 3, 6)
