from __future__ import annotations

from pathlib import Path

from log_capturer.sources.positions import PositionStore


def test_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    store = PositionStore(tmp_path / "pos", "files")
    assert store.load() == {}
    store.save({"/a.log": {"offset": 10}})
    store.save({"/a.log": {"offset": 20}})
    assert store.load() == {"/a.log": {"offset": 20}}
    assert [p.name for p in (tmp_path / "pos").iterdir()] == ["files.json"]


def test_corrupt_file_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / "files.json").write_text("{not json")
    store = PositionStore(tmp_path, "files")
    assert store.load() == {}
    assert (tmp_path / "files.corrupt").exists()
