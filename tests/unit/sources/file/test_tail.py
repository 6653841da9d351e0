from __future__ import annotations

import os
from pathlib import Path

from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Origin
from log_capturer.sources.file.tail import TailedFile


def tailed(path: Path, offset: int = 0) -> TailedFile:
    fd = os.open(path, os.O_RDONLY)
    st = os.fstat(fd)
    return TailedFile(
        str(path), fd, st.st_dev, st.st_ino, Origin("file", str(path)), Checkpoint(offset), read_offset=offset
    )


def test_whole_lines_only_and_offsets_on_line_boundaries(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"one\ntwo\nthr")
    tf = tailed(p)
    chunk, read = tf.read_chunk(1 << 20, 1 << 20)
    assert read and chunk is not None
    assert chunk.lines == ["one", "two"] and (chunk.start, chunk.end) == (0, 8)
    with p.open("ab") as f:
        f.write(b"ee\nfour\n")
    chunk, _ = tf.read_chunk(1 << 20, 1 << 20)
    assert chunk is not None and chunk.lines == ["three", "four"] and (chunk.start, chunk.end) == (8, 19)
    assert tf.read_chunk(1 << 20, 1 << 20) == (None, False)


def test_small_buffer_reads_across_calls(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"".join(b"line %d\n" % i for i in range(100)))
    tf = tailed(p)
    lines = []
    ends = []
    while True:
        chunk, read = tf.read_chunk(16, 1 << 20)
        if not read:
            break
        if chunk:
            lines += chunk.lines
            ends.append(chunk.end)
    assert lines == [f"line {i}" for i in range(100)]
    assert ends[-1] == p.stat().st_size


def test_crlf_blank_lines_and_invalid_utf8(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"a\r\n\n\nb\xff\xfec\n\xe2\x82\xac euro\n")
    chunk, _ = tailed(p).read_chunk(1 << 20, 1 << 20)
    assert chunk is not None
    assert chunk.lines == ["a", "b\\xff\\xfec", "\u20ac euro"]
    assert chunk.end == p.stat().st_size


def test_long_line_is_truncated_and_marked(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"short\n" + b"x" * 1000 + b"\n\nafter\n")
    chunk, _ = tailed(p).read_chunk(1 << 20, 300)
    assert chunk is not None
    assert chunk.lines == ["short", "x" * 300, "after"]
    assert chunk.truncated == frozenset({1})


def test_truncation_never_splits_a_utf8_character(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(("é" * 400).encode() + b"\n")
    chunk, _ = tailed(p).read_chunk(1 << 20, 301)
    assert chunk is not None and chunk.lines == ["é" * 150]


def test_a_huge_line_without_newline_is_cut_then_skipped_to_its_end(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"y" * 5000)
    tf = tailed(p)
    chunk, _ = tf.read_chunk(256, 512)
    assert chunk is None  # still collecting the line
    chunk, _ = tf.read_chunk(1024, 512)
    assert chunk is not None and chunk.lines == ["y" * 512] and chunk.truncated == frozenset({0})
    ends = []
    while True:
        chunk, read = tf.read_chunk(1024, 512)
        if not read:
            break
        if chunk is not None:
            assert chunk.lines == []
            ends.append(chunk.end)
    with p.open("ab") as f:
        f.write(b"tail of the long line\nnext\n")
    chunk, _ = tf.read_chunk(1024, 512)
    assert chunk is not None and chunk.lines == ["next"] and chunk.end == p.stat().st_size
    assert memory_bounded(tf)


def memory_bounded(tf: TailedFile) -> bool:
    return len(tf.partial) <= 2048


def test_copytruncate_is_detected_by_size_shrink(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"old 1\nold 2\n")
    tf = tailed(p)
    tf.read_chunk(1 << 20, 1 << 20)
    with p.open("r+b") as f:
        f.truncate(0)
    p.write_bytes(b"new\n")
    chunk, _ = tf.read_chunk(1 << 20, 1 << 20)
    assert chunk is not None and chunk.lines == ["new"] and chunk.start == 0
    assert tf.checkpoint.committed == 0


def test_position_entry_fields(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"x\n")
    tf = tailed(p)
    entry = tf.position_entry()
    assert set(entry) == {"offset", "size", "inode", "device", "last_read", "log_count", "bytes_read"}
