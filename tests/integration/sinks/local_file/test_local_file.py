"""The local file sink against real files: what is on disk when a line is acknowledged, rotation,
gzip, retention, text lines, a directory that refuses writes, a record refused for its own sake."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk, Origin
from log_capturer.reliability.config import DispatcherDLQConfig
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.reliability.dlq.replay import record_of
from log_capturer.sinks.local_file.config import LocalFileSinkConfig
from log_capturer.sinks.local_file.sink import LocalFileSink
from tests.support import wait_until

pytestmark = pytest.mark.integration

ORIGIN = Origin("file", "/var/log/app.log", {"team": "core"})


def chunks(
    count: int, per_chunk: int, width: int = 40, origin: Origin = ORIGIN, start: int = 0
) -> list[Chunk]:
    out = []
    for c in range(count):
        lines = [f"seq={start + c * per_chunk + i} " + "x" * width for i in range(per_chunk)]
        ch = Chunk(origin, lines)
        ch.levels = ["info"] * per_chunk
        ch.expect(per_chunk, None)
        out.append(ch)
    return out


def make_sink(tmp_path: Path, **cfg: Any) -> tuple[LocalFileSink, Path]:
    out = tmp_path / "out"
    config = LocalFileSinkConfig.model_validate({"enabled": True, "directory": str(out), **cfg})
    store = DeadLetterStore(DispatcherDLQConfig(directory=str(tmp_path / "dlq")), Metrics())
    sink = LocalFileSink(config, Metrics(), store)
    sink.start()
    return sink, out


def read_all(directory: Path) -> list[bytes]:
    """Every line of every file of the sink (gzip or not), hidden files aside."""
    lines: list[bytes] = []
    for p in sorted(directory.iterdir()):
        if p.name.startswith("."):
            continue
        data = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
        lines += data.splitlines()
    return lines


def seqs_of(lines: list[bytes]) -> list[int]:
    return [int(orjson.loads(line)["message"].split()[0][4:]) for line in lines]


def test_a_line_is_acknowledged_once_it_is_on_disk_and_reads_back_as_the_kafka_record(tmp_path: Path) -> None:
    sink, out = make_sink(tmp_path, filename_pattern="logs-{source_type}-{date}.log", file_permissions="0600")
    batch = chunks(5, 100)
    try:
        sink.send(batch)
        wait_until(lambda: all(c.done for c in batch), 30, "the chunks to be acknowledged")
        stats = sink.stats()
    finally:
        sink.stop(10)
    (name,) = [p.name for p in out.iterdir()]
    assert name == f"logs-file-{time.strftime('%Y-%m-%d', time.gmtime())}.log"
    assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    lines = read_all(out)
    assert seqs_of(lines) == list(range(500))  # in order, once each
    doc = orjson.loads(lines[0])
    assert (doc["level"], doc["source_type"], doc["source_id"], doc["labels"]) == (
        "info",
        "file",
        "/var/log/app.log",
        {"team": "core"},
    )
    assert stats["delivered"] == 500 and stats["records_written"] == 500 and stats["syncs"] >= 1, stats


def test_text_lines_as_text_format_says(tmp_path: Path) -> None:
    sink, out = make_sink(
        tmp_path,
        output_format="text",
        filename_pattern="app.log",
        text_format={"timestamp_format": "%Y-%m-%d %H:%M:%S", "field_separator": " | "},
    )
    batch = chunks(1, 3, width=0)
    try:
        sink.send(batch)
        wait_until(lambda: batch[0].done, 30, "the chunk to be acknowledged")
    finally:
        sink.stop(10)
    lines = (out / "app.log").read_text().splitlines()
    assert len(lines) == 3
    ts, level, source, labels, message = lines[1].split(" | ")
    assert time.strptime(ts, "%Y-%m-%d %H:%M:%S")
    assert (level, source, labels, message) == ("INFO", "file//var/log/app.log", "team=core", "seq=1 ")


def test_size_rotation_gzips_closed_files_and_keeps_every_line(tmp_path: Path) -> None:
    sink, out = make_sink(
        tmp_path,
        filename_pattern="big.log",
        rotation={"max_size_mb": 1, "max_files": 100},
        sync_interval="200ms",
    )
    batch = chunks(40, 250, width=400)  # about 4.3 MB
    try:
        sink.send(batch)
        wait_until(lambda: all(c.done for c in batch), 60, "the chunks to be acknowledged")
        wait_until(lambda: sink.stats()["files_compressed"] >= 3, 60, "rotated files to be compressed")
        stats = sink.stats()
    finally:
        sink.stop(10)
    names = sorted(p.name for p in out.iterdir())
    rotated = [n for n in names if n.endswith(".gz")]
    assert "big.log" in names and len(rotated) >= 3, names
    assert all(n.startswith("big.log.") for n in rotated)
    assert (out / "big.log").stat().st_size <= (1 << 20) + 250 * 600
    assert sorted(seqs_of(read_all(out))) == list(range(10_000))
    assert stats["rotations"] >= 3, stats


def test_retention_keeps_max_files_closed_files(tmp_path: Path) -> None:
    sink, out = make_sink(tmp_path, filename_pattern="r.log", rotation={"max_size_mb": 1, "max_files": 2})
    batch = chunks(50, 250, width=400)
    try:
        for c in batch:  # one by one: each rotation is handed to the housekeeper in turn
            sink.send([c])
        wait_until(lambda: all(c.done for c in batch), 60, "the chunks to be acknowledged")
        wait_until(lambda: sink.stats()["files_deleted"] >= 1, 60, "retention to delete old files")
    finally:
        sink.stop(10)
    closed = [p.name for p in out.iterdir() if p.name != "r.log" and not p.name.startswith(".")]
    assert len(closed) <= 2, closed
    # What is left is the newest lines.
    assert max(seqs_of(read_all(out))) == 50 * 250 - 1


def test_time_rotation_closes_the_file_the_pattern_no_longer_names(tmp_path: Path) -> None:
    sink, out = make_sink(tmp_path, filename_pattern="t-{hour}.log")
    batch = chunks(1, 10)
    try:
        sink.send(batch)
        wait_until(lambda: batch[0].done, 30, "the chunk to be acknowledged")
        (name,) = [p.name for p in out.iterdir()]
        sink.files.clock = lambda: time.time() + 3600  # an hour later
        wait_until((out / f"{name}.gz").exists, 30, "the closed file to be compressed")
    finally:
        sink.stop(10)
    assert not (out / name).exists()
    assert seqs_of(gzip.decompress((out / f"{name}.gz").read_bytes()).splitlines()) == list(range(10))


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Paths made immutable (``chattr +i``: even root cannot write them), made mutable again after."""
    paths: list[Path] = []
    yield paths
    for p in paths:
        subprocess.run(["chattr", "-i", str(p)], check=False)


def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True)


def test_a_directory_that_refuses_writes_holds_the_lines_until_it_recovers(
    tmp_path: Path, immutable: list[Path]
) -> None:
    sink, out = make_sink(tmp_path, filename_pattern="d.log", circuit_breaker={"timeout": "1s"})
    first = chunks(1, 10)
    try:
        sink.send(first)
        wait_until(lambda: first[0].done, 30, "the first chunk")
        immutable += [out, out / "d.log"]
        chattr("+i", *immutable)
        held = chunks(1, 10, start=10)
        sink.send(held)
        wait_until(lambda: sink.health().status == "unhealthy", 30, "the sink to say it cannot write")
        health = sink.health()
        assert not held[0].done  # not on disk: not acknowledged
        assert "Operation not permitted" in sink.stats()["last_error"], sink.stats()
        chattr("-i", *immutable)
        wait_until(lambda: held[0].done, 60, "the held chunk once the directory takes writes again")
    finally:
        chattr("-i", *immutable)
        sink.stop(10)
    assert health.details["directory"] == str(out)
    assert seqs_of(read_all(out)) == list(range(20))  # once each: a failed write leaves nothing


def test_a_record_whose_file_name_is_too_long_is_parked_with_the_reason(tmp_path: Path) -> None:
    sink, out = make_sink(tmp_path, filename_pattern="{source_id}{source_id}{source_id}.log")
    long_origin = Origin("file", "/" + "a" * 200)
    bad = chunks(1, 3, origin=long_origin)
    good = chunks(1, 3, start=3)
    try:
        sink.send(bad + good)
        wait_until(lambda: bad[0].done and good[0].done, 30, "both chunks to be acknowledged")
        stats = sink.stats()
        assert sink.dlq is not None
        entries = sink.dlq.select(due_only=False)
        # A replay writes them once they can be written: not here (the same name).
        outcome = sink.replay([record_of(e) for e in entries], timeout=10)
    finally:
        sink.stop(10)
    assert stats["parked"] == 3 and stats["delivered"] == 3, stats
    assert len(entries) == 3
    assert {e["failed_sink"] for e in entries} == {"local_file_sink"}
    assert all("File name too long" in e["error_message"] for e in entries), entries[0]
    assert seqs_of(read_all(out)) == [3, 4, 5]
    assert len(outcome) == 3 and all(v and "too long" in v for v in outcome.values()), outcome


def test_replay_writes_parked_records_to_the_files(tmp_path: Path) -> None:
    sink, out = make_sink(tmp_path, filename_pattern="p.log")
    try:
        batch = chunks(1, 4)
        assert sink.dead_letter(batch, "backpressure", "overflow for the test")
        assert batch[0].done
        assert sink.dlq is not None
        entries = sink.dlq.select(due_only=False)
        outcome = sink.replay([record_of(e) for e in entries], timeout=10)
    finally:
        sink.stop(10)
    assert outcome == {e["entry_id"]: None for e in entries}
    assert seqs_of(read_all(out)) == [0, 1, 2, 3]
    assert os.access(out / "p.log", os.R_OK)
