"""The file source: discovery, rotation, copytruncate, identity, restarts and descriptors."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.config.schema import FilesConfig, PositionsConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.sources.file import rotation
from log_capturer.sources.file.identity import Fingerprint
from log_capturer.sources.file.source import FileSource
from tests.unit.sources.harness import MemorySink, make_dispatcher, settle


@pytest.fixture(autouse=True)
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotation, "ROTATED_GRACE", 0.0)


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.sink = MemorySink()
        self.metrics = Metrics()
        self.dispatcher: Dispatcher = make_dispatcher(self.sink, self.metrics)
        self.sources: list[FileSource] = []

    def source(self, **files: Any) -> FileSource:
        cfg = FilesConfig(watch_directories=[str(self.logs)], **files)
        src = FileSource(cfg, PositionsConfig(directory=str(self.tmp / "pos")), self.dispatcher, self.metrics)
        src.tailer.rescan()
        self.sources.append(src)
        return src

    def settle(self, src: FileSource) -> None:
        settle(src.tailer, self.dispatcher)

    def positions(self) -> dict[str, Any]:
        return orjson.loads((self.tmp / "pos" / "files.json").read_bytes())  # type: ignore[no-any-return]

    def close(self) -> None:
        for s in self.sources:
            s.tailer.close()
        self.dispatcher.close(5)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.close()


def write(path: Path, tag: str, start: int, count: int) -> list[str]:
    lines = [f"{tag} line {i:06d} " + "x" * (i % 40) for i in range(start, start + count)]
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))
    return lines


def assert_exactly(sink: MemorySink, expected: list[str]) -> None:
    got = sink.lines()
    assert not sink.duplicates(), f"duplicates: {list(sink.duplicates().items())[:3]}"
    missing = set(expected) - set(got)
    assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:3]}"
    assert sorted(got) == sorted(expected)


# -- discovery --------------------------------------------------------------------------------------


def test_discovery_patterns_recursion_excluded_dirs_and_compressed_files(env: Env) -> None:
    (env.logs / "sub" / "deep").mkdir(parents=True)
    (env.logs / "skip").mkdir()
    for name in ["a.log", "b.txt", "a.log.1", "old.log.gz", "sub/c.log", "sub/deep/d.log", "skip/e.log"]:
        (env.logs / name).write_text("x\n")
    src = env.source(exclude_directories=[str(env.logs / "skip")])
    assert set(src.tailer.targets) == {str(env.logs / p) for p in ["a.log", "sub/c.log", "sub/deep/d.log"]}
    flat = env.source(recursive=False, include_patterns=["*.log", "*.txt", "*.gz"])
    # *.gz stays excluded by the default exclude_patterns even when included.
    assert set(flat.tailer.targets) == {str(env.logs / "a.log"), str(env.logs / "b.txt")}


def test_read_from_end_applies_to_files_found_at_start_only(env: Env) -> None:
    old = env.logs / "old.log"
    write(old, "before", 0, 10)
    src = env.source(read_from="end")
    env.settle(src)
    assert env.sink.lines() == []
    appended = write(old, "after", 0, 5)
    created = write(env.logs / "new.log", "new", 0, 5)
    src.tailer.rescan()
    env.settle(src)
    assert_exactly(env.sink, appended + created)


# -- rotation ---------------------------------------------------------------------------------------


def test_rename_rotation_reads_the_old_file_to_its_end_first_then_releases_it(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "a", 0, 100)
    src = env.source()
    env.settle(src)
    with log.open("a") as writer:  # a writer that keeps the old file open across the rotation
        os.rename(log, env.logs / "app.log.1")
        writer.write("a late line written after the rename\n")
    expected.append("a late line written after the rename")
    expected += write(log, "b", 0, 50)
    src.tailer.rescan()
    rotated = src.files(live=False)
    assert [tf.path for tf in rotated] == [str(env.logs / "app.log.1")]
    assert rotated[0].origin.source_id == str(log)
    env.settle(src)
    assert_exactly(env.sink, expected)
    order = env.sink.lines()
    assert order.index("a late line written after the rename") < order.index(expected[101])
    assert src.files(live=False) == []  # released once read and acknowledged
    assert src.tailer.open_files == 1


def test_a_file_renamed_to_another_watched_name_keeps_its_position(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "a", 0, 20)
    src = env.source(include_patterns=["*.log", "*.log.*"])
    env.settle(src)
    os.rename(log, env.logs / "app.log.1")
    expected += write(env.logs / "app.log.1", "a", 20, 5)
    src.tailer.rescan()
    env.settle(src)
    assert_exactly(env.sink, expected)
    assert src.tailer.followed.by_path == {str(env.logs / "app.log.1"): src.files()[0].key}


def test_deleted_file_is_read_to_its_end_from_the_open_descriptor(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "a", 0, 10)
    src = env.source()
    env.settle(src)
    expected += write(log, "a", 10, 10)
    log.unlink()
    src.tailer.rescan()
    env.settle(src)
    assert_exactly(env.sink, expected)
    assert src.tailer.followed.tracked == {}


# -- copytruncate ------------------------------------------------------------------------------------


def copytruncate(log: Path, copy: Path) -> None:
    shutil.copyfile(log, copy)
    with log.open("r+b") as f:
        f.truncate(0)


def test_copytruncate_continues_in_the_copy_so_unread_lines_are_not_lost(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "gen1", 0, 200)
    src = env.source()
    env.settle(src)
    expected += write(log, "gen1", 200, 300)  # written, not yet read when the rotation happens
    copytruncate(log, env.logs / "app.log.1")
    expected += write(log, "gen2", 0, 10)  # smaller than before: a size shrink
    env.settle(src)
    assert_exactly(env.sink, expected)
    order = env.sink.lines()
    assert order.index(expected[499]) < order.index(expected[500])  # old content first


def test_copytruncate_regrown_past_the_offset_is_caught_by_the_fingerprint(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "gen1", 0, 50)
    src = env.source()
    env.settle(src)
    expected += write(log, "gen1", 50, 25)
    copytruncate(log, env.logs / "app.log.1")
    expected += write(log, "gen2", 0, 400)  # already longer than what was read
    env.settle(src)
    assert_exactly(env.sink, expected)


def test_truncation_without_a_copy_restarts_at_zero_and_counts_the_loss(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "gen1", 0, 50)
    src = env.source(read_buffer_bytes=4096)
    env.settle(src)
    lost = write(log, "lost", 0, 500)
    src.tailer.pump_all(time.monotonic())  # sees the new size, reads one buffer of it
    with log.open("r+b") as f:
        f.truncate(0)
    expected += write(log, "gen2", 0, 3)
    env.settle(src)
    got = env.sink.lines()
    read_before = [line for line in got if line.startswith("lost")]
    assert 0 < len(read_before) < len(lost)
    assert_exactly(env.sink, expected + read_before)
    sample = env.metrics.registry.get_sample_value(
        "errors_total", {"component": "file_source", "error_type": "truncated_unread"}
    )
    assert sample == 1.0


def test_copy_that_matches_the_patterns_is_not_sent_twice(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "gen1", 0, 100)
    src = env.source(include_patterns=["*"])
    env.settle(src)
    copy = env.logs / "app.log.1"
    shutil.copyfile(log, copy)
    src.tailer.rescan()  # the copy is seen before the truncation: recognised by its fingerprint
    assert src.tailer.followed.copies and not src.files(live=False)
    expected += write(log, "gen1", 100, 20)
    shutil.copyfile(log, copy)
    with log.open("r+b") as f:
        f.truncate(0)
    expected += write(log, "gen2", 0, 5)
    env.settle(src)
    src.tailer.rescan()
    env.settle(src)
    assert_exactly(env.sink, expected)


def test_a_copy_that_grows_is_a_log_of_its_own(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "a", 0, 100)
    src = env.source(include_patterns=["*.log"])
    env.settle(src)
    twin = env.logs / "twin.log"
    shutil.copyfile(log, twin)
    src.tailer.rescan()
    env.settle(src)
    assert_exactly(env.sink, expected)
    grown = write(twin, "twin", 0, 3)
    src.tailer.rescan()
    env.settle(src)
    assert sorted(env.sink.lines()) == sorted(expected * 2 + grown)


# -- identity and restarts ---------------------------------------------------------------------------


def test_restart_resumes_at_the_acknowledged_offset(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "a", 0, 100)
    src = env.source()
    env.settle(src)
    src.tailer.save_positions()
    src.tailer.close()
    entry = env.positions()["positions"][str(log)]
    assert env.positions()["version"] == 2
    assert entry["offset"] == log.stat().st_size and entry["log_count"] == 100
    assert entry["fingerprint_bytes"] == 1024 and entry["state"] == "live"
    expected += write(log, "a", 100, 10)
    src2 = env.source()
    env.settle(src2)
    assert_exactly(env.sink, expected)


def test_inode_reuse_with_another_fingerprint_is_a_new_file(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "new content", 0, 30)
    st = log.stat()
    # A saved position for this very device+inode, from a deleted file with other first bytes.
    (env.tmp / "pos").mkdir()
    (env.tmp / "pos" / "files.json").write_bytes(
        orjson.dumps(
            {
                "version": 2,
                "positions": {
                    str(log): {
                        "offset": 500,
                        "size": 900,
                        "inode": st.st_ino,
                        "device": st.st_dev,
                        "fingerprint": Fingerprint.of_head(b"old file's first bytes\n").digest,
                        "fingerprint_bytes": 23,
                        "source_id": str(log),
                        "state": "live",
                        "log_count": 9,
                    }
                },
            }
        )
    )
    src = env.source()
    env.settle(src)
    assert_exactly(env.sink, expected)


def test_positions_format_1_is_migrated(env: Env) -> None:
    log = env.logs / "app.log"
    first = write(log, "a", 0, 40)
    st = log.stat()
    (env.tmp / "pos").mkdir()
    (env.tmp / "pos" / "files.json").write_bytes(
        orjson.dumps(
            {
                "version": 1,
                "positions": {
                    str(log): {
                        "offset": st.st_size,
                        "size": st.st_size,
                        "inode": st.st_ino,
                        "device": st.st_dev,
                        "last_read": "2026-01-01T00:00:00Z",
                        "log_count": 40,
                        "bytes_read": st.st_size,
                    }
                },
            }
        )
    )
    assert first
    expected = write(log, "a", 40, 7)
    src = env.source()
    env.settle(src)
    assert_exactly(env.sink, expected)
    src.tailer.save_positions()
    saved = env.positions()
    assert saved["version"] == 2
    entry = saved["positions"][str(log)]
    assert entry["log_count"] == 47 and entry["fingerprint_bytes"] == 1024


def test_crash_while_a_rotated_file_drains_resumes_it_after_restart(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "gen1", 0, 3000)
    src = env.source(read_buffer_bytes=4096)
    src.tailer.pump_all(time.monotonic())  # one small read: most of the file is unread
    os.rename(log, env.logs / "app.log.1")
    expected += write(log, "gen2", 0, 10)
    src.tailer.rescan()
    assert [tf.path for tf in src.files(live=False)] == [str(env.logs / "app.log.1")]
    src.tailer.pump_all(time.monotonic())
    for _ in range(500):  # wait for the acknowledgements of what was read, then "crash"
        if all(tf.checkpoint.idle for tf in src.tailer.followed.tracked.values()):
            break
        time.sleep(0.005)
    src.tailer.save_positions()
    src.tailer.close()
    positions = env.positions()["positions"]
    rotated = positions[str(env.logs / "app.log.1")]
    assert rotated["state"] == "rotated" and rotated["source_id"] == str(log)
    assert 0 < rotated["offset"] < (env.logs / "app.log.1").stat().st_size
    src2 = env.source(read_buffer_bytes=4096)
    env.settle(src2)
    assert_exactly(env.sink, expected)
    src2.tailer.save_positions()
    done = env.positions()["positions"][str(env.logs / "app.log.1")]  # read, released, remembered
    assert done["state"] == "released" and done["offset"] == done["size"]


def test_copytruncate_while_stopped_continues_in_the_copy(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "gen1", 0, 100)
    src = env.source()
    env.settle(src)
    src.tailer.save_positions()
    src.tailer.close()
    expected += write(log, "gen1", 100, 50)
    copytruncate(log, env.logs / "app.log.1")
    expected += write(log, "gen2", 0, 500)
    src2 = env.source()
    env.settle(src2)
    assert_exactly(env.sink, expected)


# -- descriptors -------------------------------------------------------------------------------------


def test_many_files_with_few_descriptors(env: Env) -> None:
    expected: list[str] = []
    paths = [env.logs / f"f{i:03d}.log" for i in range(60)]
    for i, p in enumerate(paths):
        expected += write(p, f"f{i}", 0, 3)
    src = env.source(max_open_files=8)
    assert src.tailer.open_files <= 8
    for round_ in range(3):
        for i, p in enumerate(paths):
            expected += write(p, f"f{i}", 3 + round_, 1)
        for _ in range(20):
            src.tailer.pump_all(time.monotonic())
            assert src.tailer.open_files <= 8
        env.settle(src)
    assert_exactly(env.sink, expected)
    assert len(src.files()) == 60


def test_close_inactive_releases_descriptors_and_reopens_by_identity(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "a", 0, 5)
    src = env.source(close_inactive=0)
    env.settle(src)
    assert src.tailer.open_files == 0
    expected += write(log, "a", 5, 5)
    env.settle(src)
    assert_exactly(env.sink, expected)
    # Replaced while closed: the new file is found at the next scan, read from its start.
    log.unlink()
    expected += write(log, "b", 0, 5)
    src.tailer.rescan()
    env.settle(src)
    assert_exactly(env.sink, expected)


# -- generations rotated away between two looks ------------------------------------------------------


def rotate_by_rename(log: Path) -> None:
    n = 1
    while log.with_name(f"{log.name}.{n}").exists():
        n += 1
    for k in range(n - 1, 0, -1):
        log.with_name(f"{log.name}.{k}").rename(log.with_name(f"{log.name}.{k + 1}"))
    log.rename(log.with_name(log.name + ".1"))


def test_generations_rotated_away_between_two_looks_are_read_in_order(env: Env) -> None:
    log = env.logs / "app.log"
    archive = env.logs / "app.log.archive"
    archive.write_text("an old rotated file, shipped long ago\n")
    os.utime(archive, (time.time() - 3600, time.time() - 3600))
    expected = write(log, "gen0", 0, 10)
    src = env.source()
    env.settle(src)
    expected += write(log, "gen0", 10, 5)
    rotate_by_rename(log)
    expected += write(log, "gen1", 0, 20)
    rotate_by_rename(log)
    expected += write(log, "gen2", 0, 20)
    shutil.copyfile(log, env.logs / "app.log.0")
    with log.open("r+b") as f:
        f.truncate(0)
    rotate_by_rename(log)
    expected += write(log, "gen3", 0, 20)
    src.tailer.rescan()
    env.settle(src)
    assert_exactly(env.sink, expected)
    assert env.sink.lines() == expected  # generation after generation


def test_a_released_generation_renamed_again_is_not_taken_for_one_rotated_away_unseen(env: Env) -> None:
    """Docker's json-file at full speed: every rotation renames every generation (.1 -> .2), all
    written within the same instant. A generation already read and released must not be caught
    up again as "rotated away between two looks" when the next rotation is found."""
    log = env.logs / "app.log"
    expected = write(log, "gen0", 0, 10)
    src = env.source()
    env.settle(src)
    rotate_by_rename(log)
    expected += write(log, "gen1", 0, 10)
    src.tailer.rescan()
    env.settle(src)
    assert not src.files(live=False), "gen0 was read and released"
    rotate_by_rename(log)  # gen0: app.log.2, gen1: app.log.1
    expected += write(log, "gen2", 0, 10)
    same_instant = time.time()
    for f in env.logs.iterdir():
        os.utime(f, (same_instant, same_instant))
    src.tailer.rescan()
    env.settle(src)
    assert_exactly(env.sink, expected)


def test_a_file_rotated_away_before_its_first_read_still_catches_up_the_generations_after_it(
    env: Env,
) -> None:
    """A new file found by a scan but not read yet (its source's rotated files drain first, or
    the read loop is held by backpressure) and rotated away again: the generations written after
    it, rotated away unseen as well, are still found (Docker's json-file at full speed)."""
    log = env.logs / "app.log"
    expected = write(log, "gen0", 0, 10)
    src = env.source()
    env.settle(src)
    rotate_by_rename(log)
    expected += write(log, "gen1", 0, 10)
    src.tailer.rescan()  # gen0 rotated, gen1 followed: not read yet
    rotate_by_rename(log)
    expected += write(log, "gen2", 0, 10)
    rotate_by_rename(log)
    expected += write(log, "gen3", 0, 10)
    src.tailer.rescan()
    env.settle(src)
    assert_exactly(env.sink, expected)
    assert env.sink.lines() == expected  # generation after generation


def test_a_file_rotated_between_the_scan_and_its_opening_is_still_read(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan stats the path (gen1), Docker rotates it before the tailer opens the path (through
    its descriptor cache): the tailer opens gen2. gen1, never followed, must still be read (before gen2)."""
    log = env.logs / "app.log"
    expected = write(log, "gen0", 0, 10)
    src = env.source()
    env.settle(src)
    rotate_by_rename(log)
    expected += write(log, "gen1", 0, 10)
    real_open = src.tailer.descriptors.open
    armed = [True]

    def open_fd(path: str, keep: Any = None) -> int | None:
        if armed[0] and path == str(log):
            armed[0] = False
            rotate_by_rename(log)  # between the scan's stat and this open
            expected.extend(write(log, "gen2", 0, 10))
        return real_open(path, keep)

    monkeypatch.setattr(src.tailer.descriptors, "open", open_fd)
    src.tailer.rescan()
    env.settle(src)
    assert not armed[0]
    assert_exactly(env.sink, expected)
    assert env.sink.lines() == expected  # generation after generation


def test_a_new_path_rotated_between_the_scan_and_its_opening_is_read_from_its_first_file(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race on a path seen for the first time after start-up (no earlier file there to
    catch up from): what the scan saw is read, then the file that was opened."""
    src = env.source()
    env.settle(src)
    log = env.logs / "app.log"
    expected = write(log, "gen1", 0, 10)
    real_open = src.tailer.descriptors.open
    armed = [True]

    def open_fd(path: str, keep: Any = None) -> int | None:
        if armed[0] and path == str(log):
            armed[0] = False
            rotate_by_rename(log)  # between the scan's stat and this open
            expected.extend(write(log, "gen2", 0, 10))
        return real_open(path, keep)

    monkeypatch.setattr(src.tailer.descriptors, "open", open_fd)
    src.tailer.rescan()
    env.settle(src)
    assert not armed[0]
    assert_exactly(env.sink, expected)
    assert env.sink.lines() == expected  # generation after generation


def test_generations_made_and_rotated_away_while_the_path_was_missing_are_read(env: Env) -> None:
    """Docker renames the log, then creates the new one: a scan in between finds the path missing
    (the old file rotated, nothing new to follow yet). A generation created and rotated away
    before the next scan must be read when that scan finds the next one at the path."""
    log = env.logs / "app.log"
    expected = write(log, "gen0", 0, 10)
    src = env.source()
    env.settle(src)
    log.rename(log.with_name("app.log.1"))
    src.tailer.rescan()  # gen0 rotated; app.log does not exist
    expected += write(log, "gen1", 0, 10)
    rotate_by_rename(log)
    expected += write(log, "gen2", 0, 10)
    src.tailer.rescan()
    env.settle(src)
    assert_exactly(env.sink, expected)
    assert env.sink.lines() == expected  # generation after generation


def test_generations_rotated_while_stopped_are_read_after_restart(env: Env) -> None:
    log = env.logs / "app.log"
    expected = write(log, "gen0", 0, 10)
    src = env.source()
    env.settle(src)
    src.tailer.save_positions()
    src.tailer.close()
    expected += write(log, "gen0", 10, 5)
    rotate_by_rename(log)
    expected += write(log, "gen1", 0, 20)
    rotate_by_rename(log)
    expected += write(log, "gen2", 0, 20)
    src2 = env.source()
    env.settle(src2)
    assert_exactly(env.sink, expected)
    assert env.sink.lines() == expected


def test_deleted_and_recreated_while_stopped_is_read_from_its_start(env: Env) -> None:
    log = env.logs / "app.log"
    write(log, "old", 0, 200)
    src = env.source()
    env.settle(src)
    src.tailer.save_positions()
    src.tailer.close()
    old_inode = log.stat().st_ino
    log.unlink()
    expected = env.sink.lines() + write(log, "new", 0, 3)  # shorter than the saved offset
    reused = log.stat().st_ino == old_inode  # file systems often hand the inode out again
    src2 = env.source()
    env.settle(src2)
    assert_exactly(env.sink, expected)
    print(f"inode reused: {reused}")


def test_truncated_and_renamed_while_behind_keeps_order_and_a_restart_resends_nothing(env: Env) -> None:
    """The torture test's case: copytruncate, then a rename, both before the agent caught up.

    The copy holds the rest of the old lines, the renamed file the new ones: the copy is read
    first, and once both are read and released a restart must not take either for a
    generation rotated away unseen (the released file is remembered as read).
    """
    log = env.logs / "app.log"
    expected = write(log, "gen1", 0, 3000)
    src = env.source(read_buffer_bytes=4096)
    src.tailer.pump_all(time.monotonic())  # one small read: the agent is far behind
    copytruncate(log, env.logs / "app.log.1")
    expected += write(log, "gen2", 0, 10)
    os.utime(log, (time.time() + 2, time.time() + 2))  # written after the copy, visibly
    env.logs.joinpath("app.log.1").rename(env.logs / "app.log.2")
    log.rename(env.logs / "app.log.1")
    expected += write(log, "gen3", 0, 5)
    src.tailer.rescan()
    env.settle(src)
    assert env.sink.lines() == expected  # generation after generation
    assert not src.files(live=False), "both rotated files were released"
    src.tailer.save_positions()
    src.tailer.close()
    states = {os.path.basename(p): e["state"] for p, e in env.positions()["positions"].items()}
    assert states == {"app.log": "live", "app.log.1": "released", "app.log.2": "released"}
    src2 = env.source(read_buffer_bytes=4096)
    env.settle(src2)
    assert_exactly(env.sink, expected)
    # Remembered across this restart too, and forgotten once deleted.
    src2.tailer.save_positions()
    assert len(env.positions()["positions"]) == 3
    (env.logs / "app.log.2").unlink()
    src2.tailer.rescan()
    src2.tailer.save_positions()
    assert sorted(os.path.basename(p) for p in env.positions()["positions"]) == ["app.log", "app.log.1"]


def test_a_newer_generation_released_before_an_older_one_is_not_read_again_after_restart(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledgements can finish a newer rotated file first: it is released while the older
    one is still saved as rotated. A restart catches up generations newer than that one, and
    must know the released file as read, not as rotated away unseen."""
    log = env.logs / "app.log"
    expected = write(log, "gen1", 0, 50)
    src = env.source()
    env.settle(src)
    monkeypatch.setattr(rotation, "ROTATED_GRACE", 3600.0)
    rotate_by_rename(log)
    expected += write(log, "gen2", 0, 50)
    src.tailer.rescan()
    env.settle(src)
    rotate_by_rename(log)
    expected += write(log, "gen3", 0, 5)
    now = time.time()
    os.utime(env.logs / "app.log.2", (now - 20, now - 20))  # gen1
    os.utime(env.logs / "app.log.1", (now - 10, now - 10))  # gen2, newer
    src.tailer.rescan()
    env.settle(src)
    assert len(src.files(live=False)) == 2
    newer = next(tf for tf in src.files(live=False) if tf.path.endswith("app.log.1"))
    newer.last_active = -1e9  # its grace is over first
    src.tailer.pump_all(time.monotonic())
    assert [os.path.basename(tf.path) for tf in src.files(live=False)] == ["app.log.2"]
    src.tailer.save_positions()
    src.tailer.close()
    states = {os.path.basename(p): e["state"] for p, e in env.positions()["positions"].items()}
    assert states == {"app.log": "live", "app.log.1": "released", "app.log.2": "rotated"}
    src2 = env.source()
    env.settle(src2)
    assert_exactly(env.sink, expected)
