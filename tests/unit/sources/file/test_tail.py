from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.processing.multiline import MultilineJoiner, MultilineRule
from log_capturer.record import Chunk, Origin
from log_capturer.sources.file import tail
from log_capturer.sources.file.identity import Fingerprint
from log_capturer.sources.file.tail import TailedFile, split_lines_py


def tailed(path: Path, offset: int = 0, multiline: MultilineRule | None = None) -> TailedFile:
    fd = os.open(path, os.O_RDONLY)
    st = os.fstat(fd)
    return TailedFile(
        str(path),
        st.st_dev,
        st.st_ino,
        Fingerprint.of(fd),
        Origin("file", str(path)),
        Checkpoint(offset),
        fd=fd,
        read_offset=offset,
        assembler=MultilineJoiner(multiline) if multiline else None,
    )


def read(tf: TailedFile, bufsize: int = 1 << 20, max_line: int = 1 << 20, now: float = 0.0):
    """One read as the engine does it: refresh the size, then read a buffer."""
    assert tf.fd is not None
    tf.size = os.fstat(tf.fd).st_size
    return tf.read_chunk(bufsize, max_line, now)


def test_whole_lines_only_and_offsets_on_line_boundaries(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"one\ntwo\nthr")
    tf = tailed(p)
    chunk, was_read = read(tf, 1 << 20, 1 << 20)
    assert was_read and chunk is not None
    assert chunk.lines == ["one", "two"] and (chunk.start, chunk.end) == (0, 8)
    with p.open("ab") as f:
        f.write(b"ee\nfour\n")
    chunk, _ = read(tf, 1 << 20, 1 << 20)
    assert chunk is not None and chunk.lines == ["three", "four"] and (chunk.start, chunk.end) == (8, 19)
    assert read(tf, 1 << 20, 1 << 20) == (None, False)


def test_small_buffer_reads_across_calls(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"".join(b"line %d\n" % i for i in range(100)))
    tf = tailed(p)
    lines = []
    ends = []
    while True:
        chunk, was_read = read(tf, 16, 1 << 20)
        if not was_read:
            break
        if chunk:
            lines += chunk.lines
            ends.append(chunk.end)
    assert lines == [f"line {i}" for i in range(100)]
    assert ends[-1] == p.stat().st_size


def test_crlf_blank_lines_and_invalid_utf8(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"a\r\n\n\nb\xff\xfec\n\xe2\x82\xac euro\n")
    chunk, _ = read(tailed(p), 1 << 20, 1 << 20)
    assert chunk is not None
    assert chunk.lines == ["a", "b\\xff\\xfec", "\u20ac euro"]
    assert chunk.end == p.stat().st_size


def test_long_line_is_truncated_and_marked(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"short\n" + b"x" * 1000 + b"\n\nafter\n")
    chunk, _ = read(tailed(p), 1 << 20, 300)
    assert chunk is not None
    assert chunk.lines == ["short", "x" * 300, "after"]
    assert chunk.truncated == frozenset({1})


def test_truncation_never_splits_a_utf8_character(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(("é" * 400).encode() + b"\n")
    chunk, _ = read(tailed(p), 1 << 20, 301)
    assert chunk is not None and chunk.lines == ["é" * 150]


def test_a_huge_line_without_newline_is_cut_then_skipped_to_its_end(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"y" * 5000)
    tf = tailed(p)
    chunk, _ = read(tf, 256, 512)
    assert chunk is None  # still collecting the line
    chunk, _ = read(tf, 1024, 512)
    assert chunk is not None and chunk.lines == ["y" * 512] and chunk.truncated == frozenset({0})
    ends = []
    while True:
        chunk, was_read = read(tf, 1024, 512)
        if not was_read:
            break
        if chunk is not None:
            assert chunk.lines == []
            ends.append(chunk.end)
    with p.open("ab") as f:
        f.write(b"tail of the long line\nnext\n")
    chunk, _ = read(tf, 1024, 512)
    assert chunk is not None and chunk.lines == ["next"] and chunk.end == p.stat().st_size
    assert memory_bounded(tf)


def expected_lines(data: bytes, max_line: int) -> tuple[list[str], list[bool]]:
    """What a reader must emit for ``data`` read whole (every line ended by a newline)."""
    out: list[str] = []
    cut: list[bool] = []
    for part in data.split(b"\n")[:-1]:
        raw = part.removesuffix(b"\r")
        if not raw:
            continue
        long = len(raw) > max_line
        if long:
            end = max_line
            while end > max_line - 4 and (raw[end] & 0xC0) == 0x80:
                end -= 1
            raw = raw[:end]
        out.append(raw.decode("utf-8", "backslashreplace"))
        cut.append(long)
    return out, cut


@pytest.mark.parametrize("splitter", ["c", "python"])
def test_any_buffer_size_gives_the_lines_of_the_whole_file(
    tmp_path: Path, splitter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long and short lines, CRLF, blank lines, multi-byte and invalid UTF-8, lines over
    max_line: whatever the read size, the same lines, cut at the same byte, marked truncated, and
    every chunk ends on a line boundary (or in a line being skipped)."""
    if splitter == "python":
        monkeypatch.setattr(tail, "split_lines", split_lines_py)
    rng = random.Random(7)
    pieces = [b"short", b"", b"\r", "é€😀".encode() * 30, b"bad \xff\xfe bytes", b"x" * 700, b"y" * 3000]
    data = b"".join(rng.choice(pieces) + rng.choice([b"\n", b"\r\n"]) for _ in range(400))
    p = tmp_path / "a.log"
    p.write_bytes(data)
    for max_line in (256, 301, 4096):
        want, cut = expected_lines(data, max_line)
        for bufsize in (64, 255, 1000, 4096, 1 << 20):
            tf = tailed(p)
            lines: list[str] = []
            marks: list[bool] = []
            while True:
                chunk, was_read = read(tf, bufsize, max_line)
                if not was_read:
                    break
                if chunk is not None:
                    # On a line boundary, or inside an over-long line whose rest is skipped.
                    assert tf.skipping or data[chunk.end - 1 : chunk.end] in (b"\n", b"")
                    marks += [i in chunk.truncated for i in range(len(chunk.lines))]
                    lines += chunk.lines
            assert tf.consumed == len(data)
            assert lines == want, (max_line, bufsize)
            assert marks == cut, (max_line, bufsize)


def test_an_over_long_line_is_cut_before_it_is_decoded() -> None:
    """Truncation never decodes nor copies the discarded end: a 64 KiB line cut at 8 KiB costs
    what an 8 KiB line does (its end here is not even valid UTF-8)."""
    line = b"a" * 8192 + b"\xff" * 57_000
    data = (line + b"\n") * 3
    for split in (tail.split_lines, split_lines_py):
        lines, truncated = split(data, 0, len(data), 8192, "strict")
        assert lines == ["a" * 8192] * 3 and truncated == [0, 1, 2]


def memory_bounded(tf: TailedFile) -> bool:
    return len(tf.partial) <= 2048


def test_position_entry_fields(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"x\n")
    tf = tailed(p)
    entry = tf.position_entry()
    assert set(entry) == {
        "offset",
        "size",
        "inode",
        "device",
        "fingerprint",
        "fingerprint_bytes",
        "source_id",
        "live_path",
        "state",
        "last_read",
        "log_count",
        "bytes_read",
    }
    assert entry["fingerprint_bytes"] == 2 and entry["state"] == "live"


def test_position_entry_is_made_again_only_when_what_it_shows_changed(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"one\n")
    tf = tailed(p)
    first = tf.position_entry()
    assert tf.position_entry() is first  # nothing changed: the same entry (cheap for idle files)
    chunk, _ = read(tf)
    assert chunk is not None
    read_entry = tf.position_entry()
    assert read_entry is not first and read_entry["bytes_read"] == 4 and read_entry["offset"] == 0
    chunk.expect(len(chunk.lines), tf.checkpoint.on_chunk_done)
    tf.checkpoint.register(chunk)
    chunk.ack(len(chunk.lines))  # delivered: the checkpoint moves on a sink's thread
    acked = tf.position_entry()
    assert acked is not read_entry and (acked["offset"], acked["log_count"]) == (4, 1)
    tf.live = False
    tf.path = str(tmp_path / "a.log.1")
    rotated = tf.position_entry()
    assert rotated is not acked and rotated["state"] == "rotated"
    tf.restart_at(0, Checkpoint(0))  # truncated: a new checkpoint at 0
    assert tf.position_entry()["offset"] == 0 and tf.position_entry()["log_count"] == 0
    tf.inode += 1  # copytruncate: the same stream goes on in the copy
    assert tf.position_entry()["inode"] == tf.inode
    tf.last_read += 2
    assert tf.position_entry()["last_read"] != rotated["last_read"]


JAVA = MultilineRule.build("java", "", "", 1.0, 500, 1 << 20)


def lines_of(chunks: list[Chunk | None]) -> list[str]:
    return [line for c in chunks if c is not None for line in c.lines]


def test_multiline_checkpoint_stays_before_an_open_record(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    first = b"2026-01-01 INFO started\n2026-01-01 ERROR failed\njava.lang.IllegalStateException: boom\n"
    p.write_bytes(first)
    tf = tailed(p, multiline=JAVA)
    chunk, _ = read(tf)
    assert chunk is not None and chunk.lines == ["2026-01-01 INFO started"]
    # The ERROR record is still open: its first byte is where a restart must read again.
    assert chunk.end == len(b"2026-01-01 INFO started\n")
    with p.open("ab") as f:
        f.write(b"\tat com.example.A.run(A.java:1)\n\n\tat com.example.Main.main(Main.java:5)\n")
    chunk, _ = read(tf)
    assert chunk is not None and chunk.lines == [] and chunk.end == len(b"2026-01-01 INFO started\n")
    with p.open("ab") as f:
        f.write(b"2026-01-01 INFO next\n")
    chunk, _ = read(tf)
    assert chunk is not None
    assert chunk.lines == [
        "2026-01-01 ERROR failed\njava.lang.IllegalStateException: boom\n"
        "\tat com.example.A.run(A.java:1)\n\tat com.example.Main.main(Main.java:5)"
    ]
    assert chunk.end == p.stat().st_size - len(b"2026-01-01 INFO next\n")
    flushed = tf.flush_assembler()
    assert flushed is not None and flushed.lines == ["2026-01-01 INFO next"]
    assert flushed.end == p.stat().st_size


def test_multiline_record_split_across_small_reads(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(
        b"".join(
            b'line %d\nTraceback (most recent call last):\n  File "x.py", line %d\nValueError: %d\n'
            % (i, i, i)
            for i in range(50)
        )
    )
    tf = tailed(p, multiline=MultilineRule.build("python", "", "", 1.0, 500, 1 << 20))
    chunks = []
    ends = []
    while True:
        chunk, was_read = read(tf, bufsize=37)
        if not was_read:
            break
        chunks.append(chunk)
        if chunk is not None:
            ends.append(chunk.end)
    chunks.append(tf.flush_assembler())
    records = lines_of(chunks)
    assert records == [
        f'line {i}\nTraceback (most recent call last):\n  File "x.py", line {i}\nValueError: {i}'
        for i in range(50)
    ]
    assert ends == sorted(ends)
    data = p.read_bytes()
    # Every checkpoint position is the start of a record's first line.
    for end in set(ends):
        assert end == 0 or data[end - 1 : end] == b"\n"
        assert data[end:].startswith(b"line ") or end == len(data)


def test_reads_of_over_long_lines_join_into_one_chunk(tmp_path: Path) -> None:
    """A 1 MiB read of 64 KiB lines cut at 8 KiB keeps 128 KiB of text: the chunk takes the next
    reads' lines too (up to JOINED_READS reads, half a buffer of text), with contiguous offsets,
    each cut line marked, and the same lines as reads one at a time."""
    line = b'{"level":"info","msg":"' + b"x" * (64 * 1024 - 30) + b'"}\n'
    data = line * 100 + b"short\n" * 3
    p = tmp_path / "a.log"
    p.write_bytes(data)
    tf = tailed(p)
    chunks: list[Chunk] = []
    while True:
        chunk, was_read = read(tf, 1 << 20, 8192)
        if not was_read:
            break
        if chunk is not None:
            chunks.append(chunk)
    assert [c.start for c in chunks[1:]] == [c.end for c in chunks[:-1]]
    assert chunks[-1].end == len(data)
    # Reads of 1 MiB hold 16 lines each: the first chunk holds 4 reads' lines (half a buffer of
    # 8 KiB cuts), not one read's.
    assert len(chunks[0].lines) >= 4 * 15
    assert chunks[0].text_bytes >= (1 << 20) // 2
    assert all(c.text_bytes <= 1 << 20 for c in chunks)
    lines = [text for c in chunks for text in c.lines]
    marks = [i in c.truncated for c in chunks for i in range(len(c.lines))]
    want, cut = expected_lines(data, 8192)
    assert lines == want
    assert marks == cut


def test_reads_of_whole_lines_are_not_joined(tmp_path: Path) -> None:
    """Lines under max_line: one read, one chunk, as before."""
    data = b"a line of text\n" * 200_000
    p = tmp_path / "a.log"
    p.write_bytes(data)
    tf = tailed(p)
    chunk, _ = read(tf, 1 << 20, 8192)
    assert chunk is not None
    assert chunk.end <= 1 << 20


def test_a_chunk_joins_only_the_bare_chunk_that_follows_it() -> None:
    origin = Origin("file", "/a.log")
    a = Chunk(origin, ["a", "b"], 0, 4)
    a.truncated = frozenset({1})
    b = Chunk(origin, ["c", "d"], 4, 8)
    b.truncated = frozenset({0})
    j = a.joined(b)
    assert (j.lines, j.start, j.end, j.truncated) == (["a", "b", "c", "d"], 0, 8, frozenset({1, 2}))
    with pytest.raises(ValueError):
        a.joined(Chunk(origin, ["x"], 5, 8))
    with pytest.raises(ValueError):
        a.joined(Chunk(Origin("file", "/b.log"), ["x"], 4, 8))
    timed = Chunk(origin, ["x"], 4, 8)
    timed.timestamps = [1]
    with pytest.raises(ValueError):
        a.joined(timed)
