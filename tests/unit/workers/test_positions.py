"""Positions laid out again when the number of workers changes, and the positions directory lock."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.workers.positions import PositionsBusy, lock_positions, rebalance
from log_capturer.workers.shard import shard_of


def entry(path: str, inode: int, offset: int, source_id: str | None = None) -> dict[str, Any]:
    return {
        "offset": offset,
        "size": offset,
        "inode": inode,
        "device": 42,
        "fingerprint": f"{inode:032x}",
        "fingerprint_bytes": 16,
        "source_id": source_id or path,
        "state": "live" if source_id is None else "rotated",
    }


def save(directory: Path, name: str, entries: dict[str, Any], version: int = 2, mtime: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_bytes(orjson.dumps({"version": version, "positions": entries}))
    if mtime:
        os.utime(path, ns=(mtime, mtime))
    return path


def load(directory: Path, name: str) -> dict[str, Any]:
    return orjson.loads((directory / f"{name}.json").read_bytes())["positions"]  # type: ignore[no-any-return]


def names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.suffix == ".json"}


def test_one_to_two_workers_and_back_keeps_every_entry_with_its_source(tmp_path: Path) -> None:
    entries = {f"/logs/f{i}.log": entry(f"/logs/f{i}.log", 100 + i, 10 * i) for i in range(10)}
    # A rotated file still being read goes with the path its lines belong to, not its own.
    entries["/logs/f0.log.1"] = entry("/logs/f0.log.1", 99, 7, source_id="/logs/f0.log")
    save(tmp_path, "files", entries)
    rebalance(tmp_path, 2)
    assert names(tmp_path) == {"files.worker-0.json", "files.worker-1.json"}
    parts = [load(tmp_path, f"files.worker-{i}") for i in range(2)]
    assert parts[0] and parts[1]
    assert {**parts[0], **parts[1]} == entries
    for i, part in enumerate(parts):
        assert all(shard_of(e["source_id"], 2) == i for e in part.values())
    assert ("/logs/f0.log.1" in parts[shard_of("/logs/f0.log", 2)]) is True
    rebalance(tmp_path, 1)
    assert names(tmp_path) == {"files.json"}
    assert load(tmp_path, "files") == entries


def test_a_layout_already_right_is_not_rewritten(tmp_path: Path) -> None:
    save(tmp_path, "files", {"/a.log": entry("/a.log", 1, 5)}, mtime=1_000_000_000)
    rebalance(tmp_path, 1)
    assert (tmp_path / "files.json").stat().st_mtime_ns == 1_000_000_000


def test_the_newest_file_wins_for_one_identity(tmp_path: Path) -> None:
    # A crash between writing the new layout and removing the old files leaves both.
    save(tmp_path, "files", {"/a.log": entry("/a.log", 1, 100)}, mtime=2_000_000_000)
    save(tmp_path, "files.worker-1", {"/a.log": entry("/a.log", 1, 500)}, mtime=3_000_000_000)
    save(tmp_path, "files.worker-7", {"/b.log": entry("/b.log", 2, 9)}, mtime=1_000_000_000)
    rebalance(tmp_path, 3)
    merged = {k: v for i in range(3) for k, v in load(tmp_path, f"files.worker-{i}").items()}
    assert merged["/a.log"]["offset"] == 500 and merged["/b.log"]["offset"] == 9
    assert "files.worker-7.json" not in names(tmp_path) and "files.json" not in names(tmp_path)


def test_format_1_files_are_converted_and_containers_go_by_container_id(tmp_path: Path) -> None:
    save(tmp_path, "files", {"/a.log": {"offset": 3, "inode": 5, "device": 1}}, version=1)
    containers = {
        f"c{i}": {"since": "2026-01-01T00:00:00Z", "status": "running", "files": {}} for i in range(8)
    }
    save(tmp_path, "containers", containers, version=1)
    rebalance(tmp_path, 2)
    files = {**load(tmp_path, "files.worker-0"), **load(tmp_path, "files.worker-1")}
    assert files["/a.log"]["source_id"] == "/a.log" and files["/a.log"]["offset"] == 3
    for i in range(2):
        part = load(tmp_path, f"containers.worker-{i}")
        assert part and all(shard_of(cid, 2) == i for cid in part)
    assert not (tmp_path / "containers.json").exists()


def test_a_second_agent_cannot_take_the_positions_directory(tmp_path: Path) -> None:
    held = lock_positions(tmp_path)
    try:
        with pytest.raises(PositionsBusy, match=f"pid {os.getpid()}"):
            lock_positions(tmp_path)
    finally:
        held.close()
    lock_positions(tmp_path).close()  # free again once the first one let go


def test_a_new_agent_waits_for_the_lock_while_the_old_one_finishes(tmp_path: Path) -> None:
    import threading

    held = lock_positions(tmp_path)
    threading.Timer(0.5, held.close).start()
    lock_positions(tmp_path, wait=30).close()
