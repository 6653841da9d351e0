"""The table of followed files: identity, watched paths, reading order, fingerprint index."""

from __future__ import annotations

from pathlib import Path

from log_capturer.record import Chunk
from log_capturer.sources.file.followed import FollowedFiles
from log_capturer.sources.file.identity import FINGERPRINT_BYTES
from tests.unit.sources.file.parts import followed_file


def test_live_files_are_known_by_path_and_rotated_ones_are_not(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("a\n")
    (tmp_path / "a.log.1").write_text("old\n")
    table = FollowedFiles()
    live = followed_file(tmp_path / "a.log")
    rotated = followed_file(tmp_path / "a.log.1", live=False)
    table.add(live)
    table.add(rotated)
    assert live.key in table and table.get(rotated.key) is rotated
    assert table.by_path == {live.path: live.key}
    assert table.files() == [live] and table.files(live=False) == [rotated]
    table.remove(live)
    assert live.key not in table and table.by_path == {}


def test_a_copy_and_the_new_content_take_the_truncated_files_place(tmp_path: Path) -> None:
    for name in ["a.log", "b.log", "c.log", "a.log.1"]:
        (tmp_path / name).write_text(f"{name}\n")
    table = FollowedFiles()
    a, b, c = (followed_file(tmp_path / n) for n in ["a.log", "b.log", "c.log"])
    for tf in (a, b, c):
        table.add(tf)
    before = table.tracked
    copy = followed_file(tmp_path / "a.log.1", live=False)
    fresh = followed_file(tmp_path / "b.log")  # same identity as b: the truncated file itself
    table.insert_in_place_of(b.key, copy, fresh)
    assert list(table.tracked.values()) == [a, copy, fresh, c]
    assert table.tracked is not before and list(before.values()) == [a, b, c]  # readers keep theirs


def test_fingerprints_lag_and_in_flight_lines(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    big.write_bytes(b"x" * (FINGERPRINT_BYTES + 10) + b"\n")
    small = tmp_path / "small.log"
    small.write_text("short\n")
    table = FollowedFiles()
    tb, ts = followed_file(big), followed_file(small)
    table.add(tb)
    table.add(ts)
    assert table.complete_fingerprints(str(tmp_path)) == {tb.fingerprint.digest: tb.key}
    assert table.complete_digests() == {tb.fingerprint.digest}
    assert table.lag_bytes() == {tb.path: tb.size, ts.path: ts.size}
    chunk = Chunk(ts.origin, ["short"], 0, 6)
    chunk.expect(1, ts.checkpoint.on_chunk_done)
    ts.checkpoint.register(chunk)
    assert table.in_flight() == 1
    chunk.ack(1)
    assert table.in_flight() == 0 and table.lag_bytes()[ts.path] == 0
