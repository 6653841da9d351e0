"""Rotation: rename, deletion, truncation with and without a copy, release of drained files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from log_capturer.sources.file.identity import FINGERPRINT_BYTES
from tests.unit.sources.file.parts import ListedPaths, Parts, followed_file


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def parts(logs: Path) -> Iterator[Parts]:
    p = Parts(ListedPaths(logs / "app.log", logs / "other.log"))
    yield p
    p.close()


def test_renamed_to_another_watched_name_it_is_the_same_file(logs: Path, parts: Parts) -> None:
    (logs / "app.log").write_text("a\n")
    tf = parts.follow(followed_file(logs / "app.log", offset=2))
    os.rename(logs / "app.log", logs / "other.log")
    parts.rotation.lost_path(tf)
    assert tf.live and tf.path == str(logs / "other.log") and tf.read_offset == 2
    assert parts.followed.by_path == {str(logs / "other.log"): tf.key}


def test_renamed_away_it_is_read_to_its_end_and_unseen_generations_are_caught_up(
    logs: Path, parts: Parts
) -> None:
    (logs / "app.log").write_text("a\n")
    tf = parts.follow(followed_file(logs / "app.log", offset=2))
    with (logs / "app.log").open("a") as f:
        f.write("written before the rename\n")
    os.rename(logs / "app.log", logs / "app.log.1")
    (logs / "app.log.1.gz").write_bytes(b"compressed")
    (logs / "app.log.0").write_text("a generation rotated away before the tailer looked\n")
    parts.rotation.lost_path(tf)
    assert not tf.live and tf.fd is not None and tf.path == str(logs / "app.log.1")
    assert parts.followed.by_path == {}
    unseen = parts.followed.files(live=False)[1]
    assert parts.followed.files(live=False) == [tf, unseen] and unseen.path == str(logs / "app.log.0")
    assert tf.position_entry()["state"] == "rotated" and tf.origin.source_id == str(logs / "app.log")
    parts.rotation.refresh_rotated_paths()
    os.rename(logs / "app.log.1", logs / "app.log.2")
    parts.rotation.refresh_rotated_paths()
    assert tf.path == str(logs / "app.log.2")


def test_the_time_a_file_rotated_away_is_kept_for_the_next_file_at_its_path(logs: Path, parts: Parts) -> None:
    """Docker renames the log, then creates the next one: the tailer may find the path missing.
    The next file there catches up the generations since this time (``rotated_since``)."""
    (logs / "app.log").write_text("a\n")
    tf = parts.follow(followed_file(logs / "app.log", offset=2))
    os.rename(logs / "app.log", logs / "app.log.1")
    parts.rotation.lost_path(tf)
    assert parts.rotation.rotated_since == {str(logs / "app.log"): tf.mtime_ns} and tf.mtime_ns > 0


def test_deleted_while_closed_it_is_forgotten_and_its_lines_still_count(logs: Path, parts: Parts) -> None:
    (logs / "app.log").write_text("a\n")
    tf = parts.follow(followed_file(logs / "app.log"), open_it=False)
    tf.saved_log_count = 7
    os.unlink(logs / "app.log")
    parts.rotation.lost_path(tf)
    assert tf.key not in parts.followed and parts.followed.by_path == {}
    assert parts.checkpointer.released_lines[str(logs / "app.log")] == 7


def test_copytruncate_continues_the_old_content_in_its_copy(logs: Path, parts: Parts) -> None:
    old = b"".join(b"old line %04d " % i + b"x" * 40 + b"\n" for i in range(40))
    assert len(old) > FINGERPRINT_BYTES
    (logs / "app.log").write_bytes(old)
    tf = parts.follow(followed_file(logs / "app.log", offset=100))
    other = (
        parts.follow(followed_file(logs / "other.log")) if (logs / "other.log").write_text("o\n") else None
    )
    (logs / "app.log.1").write_bytes(old + b"written before the truncation\n")  # logrotate's copy
    with (logs / "app.log").open("wb") as f:
        f.write(b"new\n")
    old_key = tf.key
    parts.rotation.truncated(tf, 4, 1.0)
    copy_key = (logs / "app.log.1").stat()
    assert tf.key == (copy_key.st_dev, copy_key.st_ino) and tf.path == str(logs / "app.log.1")
    assert not tf.live and tf.read_offset == 100 and tf.fd is not None
    fresh = parts.followed.get(old_key)
    assert fresh is not None and fresh is not tf and fresh.live and fresh.read_offset == 0
    assert list(parts.followed.tracked.values()) == [tf, fresh, other]  # older lines first
    assert parts.followed.by_path[str(logs / "app.log")] == old_key
    assert parts.claims_changed == 1 and parts.error("truncated_unread") == 0
    assert len(parts.descriptors) == 3


def test_truncated_in_place_without_a_copy_it_is_read_again_and_the_unread_bytes_counted(
    logs: Path, parts: Parts
) -> None:
    (logs / "app.log").write_text("0123456789\n" * 3)
    tf = parts.follow(followed_file(logs / "app.log", offset=11))
    with (logs / "app.log").open("w") as f:
        f.write("new\n")
    parts.rotation.truncated(tf, 4, 1.0)
    assert tf.read_offset == 0 and tf.checkpoint.committed == 0 and tf.live
    assert parts.error("truncated_unread") == 1


def test_a_drained_rotated_file_is_released_after_the_grace(logs: Path, parts: Parts) -> None:
    (logs / "app.log.1").write_text("done\n")
    tf = parts.follow(followed_file(logs / "app.log.1", live=False, offset=5))
    parts.rotation.release_rotated(now=1.0)  # adopted at 0.0: still in its grace
    assert tf.key in parts.followed
    parts.rotation.release_rotated(now=100.0)
    assert tf.key not in parts.followed and tf.fd is None and len(parts.descriptors) == 0
    assert parts.checkpointer.entries([])[tf.path]["state"] == "released"
