"""Catch-up: rotated generations never seen, and saved rotated files resumed after a restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from log_capturer.record import Origin
from tests.unit.sources.file.parts import ListedPaths, Parts, followed_file


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path


def write(path: Path, text: str, mtime_s: int) -> None:
    path.write_text(text)
    os.utime(path, (mtime_s, mtime_s))


def test_unseen_generations_newer_than_the_last_write_are_read_oldest_first(logs: Path) -> None:
    live = logs / "app.log"
    write(live, "now\n", 3000)
    write(logs / "app.log.3", "too old\n", 500)
    write(logs / "app.log.2", "second\n", 2000)
    write(logs / "app.log.1", "third\n", 2500)
    write(logs / "app.log-first", "first\n", 1500)
    write(logs / "app.log.4.gz", "compressed\n", 2000)
    write(logs / "other.log.1", "another file's\n", 2000)
    parts = Parts(ListedPaths(live))
    try:
        parts.catch_up.generations(str(live), Origin("file", str(live)), 1000 * 10**9)
        found = parts.followed.files(live=False)
        assert [tf.path for tf in found] == [
            str(logs / n) for n in ["app.log-first", "app.log.2", "app.log.1"]
        ]
        assert all(tf.read_offset == 0 and tf.origin.source_id == str(live) for tf in found)
        assert all(tf.live_path == str(live) for tf in found)
        parts.catch_up.generations(str(live), Origin("file", str(live)), 1000 * 10**9)
        assert len(parts.followed.files(live=False)) == 3  # followed files are not found twice
    finally:
        parts.close()


def test_a_copy_of_a_followed_file_is_not_a_generation(logs: Path) -> None:
    live = logs / "app.log"
    content = "".join(f"line {i:04d} " + "x" * 60 + "\n" for i in range(30))  # a complete fingerprint
    write(live, content, 3000)
    write(logs / "app.log.1", content, 3000)
    parts = Parts(ListedPaths(live))
    try:
        parts.follow(followed_file(live))
        parts.catch_up.generations(str(live), Origin("file", str(live)), 1000 * 10**9)
        assert parts.followed.files(live=False) == []
    finally:
        parts.close()


def test_a_released_generation_renamed_again_is_not_a_generation(logs: Path) -> None:
    """Docker renames every generation at each rotation, all within the same instant: one read
    to its end and released must not be read again under its new name."""
    live = logs / "app.log"
    write(live, "now\n", 3000)
    write(logs / "app.log.1", "read and released\n", 2000)
    parts = Parts(ListedPaths(live))
    try:
        released = followed_file(logs / "app.log.1", live=False, offset=18, source_id=str(live))
        parts.checkpointer.remember_released(released.key, released.path, released.position_entry())
        os.rename(logs / "app.log.1", logs / "app.log.2")
        write(logs / "app.log.1", "never read\n", 2000)
        parts.checkpointer.refresh_released()
        parts.catch_up.generations(str(live), Origin("file", str(live)), 1000 * 10**9)
        assert [tf.path for tf in parts.followed.files(live=False)] == [str(logs / "app.log.1")]
    finally:
        parts.close()


def test_saved_rotated_files_are_resumed_where_they_are_now(logs: Path) -> None:
    live = logs / "app.log"
    write(live, "draining line 1\ndraining line 2\n", 2000)
    entry = {**followed_file(live, offset=16).position_entry(), "state": "rotated"}
    os.rename(live, logs / "app.log.1")  # renamed again while the agent was stopped
    write(live, "the new file\n", 3000)
    done = logs / "done.log.1"
    write(done, "read\n", 1000)
    done_entry = {**followed_file(done, offset=5, source_id=str(logs / "done.log")).position_entry()}
    late = {"offset": 3, "inode": 424242, "device": 1, "source_id": "/not/mounted/yet.log"}
    saved = {str(live): entry, str(done): done_entry, "/not/mounted/yet.log": late}
    parts = Parts(ListedPaths(live, logs / "done.log"), saved)
    try:
        parts.catch_up.resume_saved()
        rotated = parts.followed.files(live=False)
        assert [(tf.path, tf.read_offset, tf.checkpoint.committed) for tf in rotated] == [
            (str(logs / "app.log.1"), 16, 16)
        ]
        assert rotated[0].fd is not None and rotated[0].origin.source_id == str(live)
        assert list(parts.checkpointer.unclaimed.values()) == [("/not/mounted/yet.log", late)]
        released = parts.checkpointer.entries([])
        assert released[str(done)]["state"] == "released"  # fully read: not read again
    finally:
        parts.close()


def test_a_generation_lost_track_of_is_looked_for_again_by_the_next_search(
    logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker renames every generation at each rotation: a file renamed again each time it is
    looked for is found by no listing of a search. The next search (at the next rotation, with a
    later last write) still looks back as far, so the file is read and not left out for good."""
    from log_capturer.sources.file import catchup

    live = logs / "app.log"
    write(live, "now\n", 3000)
    write(logs / "app.log.2", "lost track of\n", 2000)
    write(logs / "app.log.1", "found\n", 2500)
    real = catchup.open_listed
    racing = True

    def open_listed(path: str, ino: int):  # type: ignore[no-untyped-def]
        if racing and path.endswith("app.log.2"):
            return None  # renamed again each time it was looked for
        return real(path, ino)

    monkeypatch.setattr(catchup, "open_listed", open_listed)
    parts = Parts(ListedPaths(live))
    try:
        origin = Origin("file", str(live))
        parts.catch_up.generations(str(live), origin, 1000 * 10**9)
        assert [tf.path for tf in parts.followed.files(live=False)] == [str(logs / "app.log.1")]
        racing = False
        # The next rotation's search: its own last write (2,800 s) is after the lost file's.
        parts.catch_up.generations(str(live), origin, 2800 * 10**9)
        assert sorted(tf.path for tf in parts.followed.files(live=False)) == [
            str(logs / "app.log.1"),
            str(logs / "app.log.2"),
        ]
        # Settled: a later search looks back only as far as it is asked to.
        write(logs / "app.log.3", "older than the last write\n", 2900)
        parts.catch_up.generations(str(live), origin, 2950 * 10**9)
        assert len(parts.followed.files(live=False)) == 2
    finally:
        parts.close()
