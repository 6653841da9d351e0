"""``sinks.local_file.encoding``: every codec read back from the files the sink wrote, and a parked
record of each codec replayed to the file it would have gone to, byte for byte."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk, Origin
from log_capturer.reliability.config import DispatcherDLQConfig
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.reliability.dlq.replay import record_of
from log_capturer.sinks.encoding import ChunkEncoder, EncodingConfig
from log_capturer.sinks.kafka.encode import encode_chunk
from log_capturer.sinks.local_file.config import LocalFileSinkConfig
from log_capturer.sinks.local_file.sink import LocalFileSink
from tests.integration.sinks.local_file.test_local_file import read_all
from tests.support import wait_until

pytestmark = pytest.mark.integration

ORIGIN = Origin("file", "/var/log/app.log", {"team": "core", "app": "shop"})
LINES = ['GET /a 200 "ok"', "été ✓ level=info \U0001f600", "   spaces   ", 'x=1 back\\slash "q"', "plain"]
LEVELS = ["info", "error", "", "info", "error"]
STAMP = 1_700_000_000_123_456_789


def chunk() -> Chunk:
    c = Chunk(ORIGIN, list(LINES), read_time_ns=STAMP)
    c.levels = list(LEVELS)
    c.keys = ["t1", None, None, "t2", None]
    c.expect(len(LINES), None)
    return c


def parse_logfmt(record: bytes) -> dict[str, Any]:
    text = record.decode()
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


def make_sink(tmp_path: Path, **cfg: Any) -> tuple[LocalFileSink, Path]:
    out = tmp_path / "out"
    config = LocalFileSinkConfig.model_validate({"enabled": True, "directory": str(out), **cfg})
    store = DeadLetterStore(DispatcherDLQConfig(directory=str(tmp_path / "dlq")), Metrics())
    sink = LocalFileSink(config, Metrics(), store, key_field="tenant_id")
    sink.start()
    return sink, out


def write(
    tmp_path: Path, encoding: dict[str, Any], pattern: str = "out-{level}.log"
) -> dict[str, list[bytes]]:
    """Send one chunk; the lines of each file the sink wrote, by file name."""
    sink, out = make_sink(tmp_path, filename_pattern=pattern, encoding=encoding)
    batch = [chunk()]
    try:
        sink.send(batch)
        wait_until(lambda: batch[0].done, 30, "the chunk to be acknowledged")
    finally:
        sink.stop(10)
    return {p.name: p.read_bytes().splitlines() for p in sorted(out.iterdir())}


def by_level(files: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    return {name.removeprefix("out-").removesuffix(".log"): lines for name, lines in files.items()}


def expected_by_level(values: list[bytes]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for value, level in zip(values, LEVELS, strict=True):
        out.setdefault(level or "unknown", []).append(value)
    return out


def test_json_is_the_kafka_envelope_byte_for_byte(tmp_path: Path) -> None:
    files = write(tmp_path, {"codec": "json"})
    assert by_level(files) == expected_by_level(encode_chunk(chunk(), "tenant_id"))


def test_raw_is_each_line_as_read(tmp_path: Path) -> None:
    files = write(tmp_path, {"codec": "raw"})
    assert by_level(files) == expected_by_level([line.encode() for line in LINES])


def test_logfmt_reads_back_as_the_envelope_members(tmp_path: Path) -> None:
    files = write(tmp_path, {"codec": "logfmt", "timestamp_format": "unix_ms"})
    got = [parse_logfmt(line) for lines in by_level(files).values() for line in lines]
    assert sorted(d["message"] for d in got) == sorted(LINES)
    for d in got:
        i = LINES.index(d["message"])
        assert d["timestamp"] == str(STAMP // 1_000_000)
        assert d.get("level") == (LEVELS[i] or None)
        assert d["labels.team"] == "core" and d["labels.app"] == "shop"
        assert d["source_id"] == "/var/log/app.log"
        assert d.get("fields.tenant_id") == chunk().keys[i]  # type: ignore[index]


def test_json_with_paths_keeps_just_those_parts(tmp_path: Path) -> None:
    files = write(tmp_path, {"only_fields": ["message", "level", "labels.app", "fields.tenant_id"]})
    docs = [orjson.loads(line) for lines in files.values() for line in lines]
    assert sorted(docs, key=lambda d: LINES.index(d["message"])) == [
        {
            "message": line,
            "level": level,
            "labels": {"app": "shop"},
            **({"fields": {"tenant_id": k}} if k else {}),
        }
        for line, level, k in zip(LINES, LEVELS, chunk().keys or [], strict=True)
    ]


@pytest.mark.parametrize(
    "encoding",
    [{"codec": "raw"}, {"codec": "logfmt"}, {"codec": "json", "except_fields": ["level", "labels"]}],
)
def test_a_parked_record_is_replayed_to_its_file_byte_for_byte(
    tmp_path: Path, encoding: dict[str, Any]
) -> None:
    """The file's placeholders ({level}) are not in a raw record: the DLQ entry keeps them."""
    sink, out = make_sink(tmp_path, filename_pattern="p-{source_type}-{level}.log", encoding=encoding)
    try:
        batch = [chunk()]
        assert sink.dead_letter(batch, "backpressure", "overflow for the test")
        assert batch[0].done
        assert sink.dlq is not None
        entries = sink.dlq.select(due_only=False)
        assert not list(out.iterdir())
        outcome = sink.replay([record_of(e) for e in entries], timeout=10)
    finally:
        sink.stop(10)
    assert outcome == {e["entry_id"]: None for e in entries}
    expected = ChunkEncoder(EncodingConfig.model_validate(encoding), "tenant_id", encode_chunk).encode(
        chunk()
    )
    files = {p.name: p.read_bytes().splitlines() for p in out.iterdir()}
    want: dict[str, list[bytes]] = {}
    for value, level in zip(expected, LEVELS, strict=True):
        want.setdefault(f"p-file-{level or 'unknown'}.log", []).append(value)
    assert {k: sorted(v) for k, v in files.items()} == {k: sorted(v) for k, v in want.items()}
    assert sorted(read_all(out)) == sorted(expected)
