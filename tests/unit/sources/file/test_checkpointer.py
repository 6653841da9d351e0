"""The checkpointer: saved entries matched by identity, only acknowledged offsets written."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import orjson
import pytest

from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk
from log_capturer.sources.file.checkpointer import MAX_RELEASED, Checkpointer, Entry, PositionWriter
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


def test_files_renamed_again_under_a_name_another_had_keep_their_entries(tmp_path: Path) -> None:
    """copytruncate's copies shifted (app.log.1 -> .2 -> .3) between two looks: the names the
    checkpointer knows are stale and two files claim one; each is looked up by inode, and no
    entry hides another (a copy left out would be read again from its start after a restart)."""
    one, two, three = (tmp_path / f"app.log.{i}" for i in (1, 2, 3))
    one.write_text("newest copy\n")
    two.write_text("newer copy\n")
    three.write_text("oldest copy\n")
    oldest = followed_file(three, live=False, offset=12)
    newer = followed_file(two, live=False, offset=11)
    newest = followed_file(one, live=False, offset=12)
    cp = Checkpointer({}, None, Metrics(), 1.0)
    cp.remember_released(oldest.key, oldest.path, oldest.position_entry())
    # Shifted: .3 -> .4, .2 -> .3, .1 -> .2; the newest copy's name was looked up since (.2),
    # the others' not: .2 names two files, and every name is stale but that one.
    for src, dst in ((three, tmp_path / "app.log.4"), (two, three), (one, two)):
        os.rename(src, dst)
    newest.path = str(two)
    entries = cp.entries([newer, newest])
    assert {p: e["inode"] for p, e in entries.items()} == {
        str(tmp_path / "app.log.4"): oldest.inode,
        str(three): newer.inode,
        str(two): newest.inode,
    }
    # Without a clash, the names are taken as they are (no lookup on every call).
    newest.path = str(tmp_path / "app.log.1")
    assert set(cp.entries([newest])) == {str(three), str(tmp_path / "app.log.1")}


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


# -- when positions are written -----------------------------------------------------------------


def test_a_write_is_due_write_delay_after_an_acknowledgement_and_coalesces_the_next(tmp_path: Path) -> None:
    cp = Checkpointer({}, None, Metrics(), flush_interval=10.0, write_delay=0.3)
    t0 = time.monotonic()
    assert not cp.due(t0) and cp.until_due(t0) == pytest.approx(10.0, abs=0.05)
    path = tmp_path / "app.log"
    path.write_text("a\nb\nc\n")
    tf = followed_file(path)
    tf.checkpoint = cp.checkpoint(0)
    chunks = [Chunk(tf.origin, ["x"], i * 2, i * 2 + 2) for i in range(3)]
    for c in chunks:
        c.expect(1, tf.checkpoint.on_chunk_done)
        tf.checkpoint.register(c)
    chunks[0].ack(1)
    assert cp.moved and cp.due(t0) and cp.until_due(t0) == 0
    cp.write_soon([tf], t0)
    assert not cp.moved
    # More acknowledgements right after: one write, write_delay after the last.
    chunks[1].ack(1)
    chunks[2].ack(1)
    assert not cp.due(t0 + 0.1) and cp.until_due(t0 + 0.1) == pytest.approx(0.2)
    assert cp.due(t0 + 0.31)
    cp.write_soon([tf], t0 + 0.31)
    # Nothing moved: the next write is flush_interval later.
    assert not cp.due(t0 + 5) and cp.due(t0 + 10.32)


def test_the_writer_writes_the_newest_entries_and_skips_what_did_not_change(tmp_path: Path) -> None:
    store = PositionStore(tmp_path / "pos", "files", 2)
    writer = PositionWriter(store, Metrics())
    for i in range(200):
        writer.put({"/a.log": {"offset": i}})
    writer.close()
    assert orjson.loads(store.path.read_bytes())["positions"] == {"/a.log": {"offset": 199}}
    assert 1 <= writer.writes <= 200
    writes = writer.writes
    writer.write({"/a.log": {"offset": 199}})  # the same entries again: not written
    assert writer.writes == writes
    writer.write({"/a.log": {"offset": 200}})
    assert writer.writes == writes + 1
    writer.put({"/a.log": {"offset": 1}})  # after close: nothing is written
    assert orjson.loads(store.path.read_bytes())["positions"] == {"/a.log": {"offset": 200}}


class SlowStore(PositionStore):
    """A real store whose first save waits until the test lets it finish."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, "files", 2)
        self.started = threading.Event()
        self.go_on = threading.Event()

    def save(self, entries: dict[str, Entry]) -> None:
        if not self.started.is_set():
            self.started.set()
            assert self.go_on.wait(10)
        super().save(entries)


def test_entries_taken_earlier_are_never_written_over_newer_ones(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "pos")
    writer = PositionWriter(store, Metrics())
    writer.put({"/a.log": {"offset": 1}})  # the writer thread takes these and blocks in save
    assert store.started.wait(10)
    writer.put({"/a.log": {"offset": 2}})  # waiting; dropped by the write below
    done = threading.Thread(target=writer.write, args=({"/a.log": {"offset": 3}},))
    done.start()  # waits for the write under way
    store.go_on.set()
    done.join(10)
    writer.close()
    assert orjson.loads(store.path.read_bytes())["positions"] == {"/a.log": {"offset": 3}}
    assert writer.writes == 2  # 1, then 3; 2 was replaced before it was written


def test_a_failed_write_is_counted_and_tried_again_by_the_next(tmp_path: Path) -> None:
    metrics = Metrics()
    blocked = tmp_path / "pos"
    blocked.write_text("a file where the directory should be")
    store = PositionStore(blocked, "files", 2)
    writer = PositionWriter(store, metrics)
    writer.write({"/a.log": {"offset": 1}})
    failed = {"component": "positions", "error_type": "save_failed"}
    assert metrics.registry.get_sample_value("errors_total", failed) == 1
    blocked.unlink()
    writer.write({"/a.log": {"offset": 1}})  # the same entries: written this time
    assert orjson.loads(store.path.read_bytes())["positions"] == {"/a.log": {"offset": 1}}
    assert writer.writes == 1
