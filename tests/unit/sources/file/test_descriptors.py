"""The descriptor cache: bounded open files, least recently read live file closed first."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from log_capturer.sources.file.descriptors import DescriptorCache, descriptor_limit
from tests.unit.sources.file.parts import ListedPaths, Parts, followed_file


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    p = Parts(ListedPaths(), max_open=2)
    yield p
    p.close()


def make(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text(f"{name}\n")
    return path


def test_at_the_limit_the_least_recently_read_live_file_is_closed(tmp_path: Path, parts: Parts) -> None:
    cache = parts.descriptors
    a = parts.follow(followed_file(make(tmp_path, "a.log")))
    b = parts.follow(followed_file(make(tmp_path, "b.log")))
    assert len(cache) == 2
    cache.touch(a)  # a was read last: b goes first
    fd = cache.open(str(make(tmp_path, "c.log")))
    assert fd is not None
    assert b.fd is None and a.fd is not None and len(cache) == 1
    c = followed_file(tmp_path / "c.log")
    cache.adopt(c, fd, 1.0)
    assert len(cache) == 2 and c.fd == fd


def test_rotated_files_are_never_closed_to_make_room(tmp_path: Path, parts: Parts) -> None:
    cache = parts.descriptors
    r1 = parts.follow(followed_file(make(tmp_path, "a.log.1"), live=False))
    r2 = parts.follow(followed_file(make(tmp_path, "a.log.2"), live=False))
    assert cache.open(str(make(tmp_path, "new.log"))) is None  # its path no longer leads to them
    assert r1.fd is not None and r2.fd is not None
    # keep= spares one file: the one whose copy is being opened.
    live = parts.follow(followed_file(make(tmp_path, "b.log")), open_it=False)
    cache.close(r2)
    fd = cache.open(live.path)
    assert fd is not None
    cache.adopt(live, fd, 0.0)
    assert cache.open(str(tmp_path / "a.log.2"), keep=live.key) is None
    assert live.fd is not None


def test_idle_live_files_read_to_their_end_are_closed(tmp_path: Path, parts: Parts) -> None:
    cache = parts.descriptors
    done = parts.follow(followed_file(make(tmp_path, "done.log")))
    done.read_offset = done.size
    behind = parts.follow(followed_file(make(tmp_path, "behind.log")))  # nothing read yet
    cache.close_inactive(now=100.0, after=50.0)
    assert done.fd is None and behind.fd is not None and len(cache) == 1
    cache.close_inactive(now=100.0, after=500.0)
    assert behind.fd is not None


def test_a_failed_open_is_counted(tmp_path: Path, parts: Parts) -> None:
    assert parts.descriptors.open(str(tmp_path / "missing.log")) is None
    assert parts.error("open_failed") == 1


def test_the_limit_stays_under_half_the_process_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        assert descriptor_limit(1000) == 128
        assert descriptor_limit(100) == 100
        assert DescriptorCache(1000, Parts(ListedPaths()).metrics, "file_source").limit == 128
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
