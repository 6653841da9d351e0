"""The checkpointer: saved entries matched by identity, only acknowledged offsets written."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk
from log_capturer.sources.file.checkpointer import MAX_RELEASED, Checkpointer, Entry
from log_capturer.sources.file.identity import FINGERPRINT_BYTES
from log_capturer.sources.positions import PositionStore
from tests.unit.sources.file.parts import followed_file


def entry_of(path: Path, offset: int) -> Entry:
    tf = followed_file(path)
    return {**tf.position_entry(), "offset": offset}


def head(path: Path) -> bytes:
    return path.read_bytes()[:FINGERPRINT_BYTES]


def test_a_saved_entry_is_claimed_by_its_file_and_not_by_a_reused_inode(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("first line\nsecond line\n")
    st = path.stat()
    key = (st.st_dev, st.st_ino)
    cp = Checkpointer({str(path): entry_of(path, 11)}, None, Metrics(), 1.0)
    assert cp.claim(key, b"other content\n", 14) is None  # same inode, another file
    assert key in cp.unclaimed
    claimed = cp.claim(key, head(path), st.st_size)
    assert claimed is not None and claimed["offset"] == 11
    assert cp.unclaimed == {} and cp.claim(key, head(path), st.st_size) is None


def test_a_format_1_entry_without_fingerprint_matches_when_its_offset_fits(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("0123456789\n")
    st = path.stat()
    saved = {str(path): {"offset": 5, "inode": st.st_ino, "device": st.st_dev}}
    assert Checkpointer(saved, None, Metrics(), 1.0).claim((st.st_dev, st.st_ino), b"", 4) is None
    assert Checkpointer(saved, None, Metrics(), 1.0).claim((st.st_dev, st.st_ino), b"", 11) is not None


def test_only_acknowledged_offsets_are_written_and_live_files_win_their_path(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("a\nb\n")
    other = tmp_path / "other.log"
    other.write_text("x\n")
    never_seen = {"offset": 3, "inode": 999999, "device": 1, "source_id": "/mnt/late.log"}
    store = PositionStore(tmp_path / "pos", "files", 2)
    cp = Checkpointer({"/mnt/late.log": never_seen}, store, Metrics(), 1.0)
    tf = followed_file(path)
    first, second = Chunk(tf.origin, ["a"], 0, 2), Chunk(tf.origin, ["b"], 2, 4)
    for c in (first, second):
        c.expect(1, tf.checkpoint.on_chunk_done)
        tf.checkpoint.register(c)
    second.ack(1)  # the later chunk alone: nothing is committed yet
    rotated = followed_file(other, live=False)
    rotated.path = str(path)  # an older file drained under the same name
    cp.save([rotated, tf])
    saved = orjson.loads(store.path.read_bytes())
    assert saved["version"] == 2
    assert saved["positions"][str(path)]["offset"] == 0
    assert saved["positions"][str(path)]["inode"] == tf.inode  # the live file's entry
    assert saved["positions"]["/mnt/late.log"] == never_seen  # kept until its directory appears
    first.ack(1)
    cp.save([tf])
    assert orjson.loads(store.path.read_bytes())["positions"][str(path)]["offset"] == 4


def test_released_files_are_remembered_while_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "app.log.1"
    path.write_text("done\n")
    tf = followed_file(path, live=False, offset=5)
    cp = Checkpointer({}, None, Metrics(), 1.0)
    cp.remember_released(tf.key, tf.path, tf.position_entry())
    cp.released_file(tf)
    assert cp.released_lines[tf.origin.source_id] == 0
    assert cp.entries([])[str(path)]["state"] == "released"
    assert cp.entries([tf])[str(path)]["state"] == "rotated"  # followed again: its own entry
    os.rename(path, tmp_path / "app.log.2")
    cp.refresh_released()
    assert set(cp.entries([])) == {str(tmp_path / "app.log.2")}
    os.unlink(tmp_path / "app.log.2")
    cp.refresh_released()
    assert cp.entries([]) == {}
    for i in range(MAX_RELEASED + 5):
        cp.remember_released((1, i), f"/x/{i}", {})
    assert len(cp.released) == MAX_RELEASED and (1, 0) not in cp.released


def test_the_source_shapes_the_file_and_a_failed_save_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("a\n")
    metrics = Metrics()
    store = PositionStore(tmp_path / "pos", "containers", 1)
    cp = Checkpointer({}, store, metrics, 1.0, shape=lambda entries: {"c1": {"files": entries}})
    cp.save([followed_file(path)])
    assert list(orjson.loads(store.path.read_bytes())["positions"]["c1"]["files"]) == [str(path)]
    (tmp_path / "blocked").write_text("a file where the directory should be")
    Checkpointer({}, PositionStore(tmp_path / "blocked", "files"), metrics, 1.0).save([])
    failed = {"component": "positions", "error_type": "save_failed"}
    assert metrics.registry.get_sample_value("errors_total", failed) == 1
