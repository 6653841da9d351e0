from __future__ import annotations

from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Chunk, Origin

ORIGIN = Origin("file", "/a.log")


def chunk(start: int, end: int, n: int = 2) -> Chunk:
    c = Chunk(ORIGIN, ["x"] * n, start, end)
    return c


def test_commit_only_over_the_acknowledged_prefix() -> None:
    cp = Checkpoint(0)
    a, b, c = chunk(0, 10), chunk(10, 20), chunk(20, 30)
    for ch in (a, b, c):
        ch.expect(2, cp.on_chunk_done)
        cp.register(ch)
    b.ack(2)  # out of order
    c.ack(2)
    assert cp.committed == 0
    a.ack(1)
    assert cp.committed == 0
    a.ack(1)
    assert cp.committed == 30
    assert cp.acked_lines == 6 and cp.in_flight_lines == 0 and cp.idle


def test_a_chunk_acknowledged_before_registration_commits_on_register() -> None:
    cp = Checkpoint(5)
    a = chunk(5, 15)
    a.expect(2, None)
    a.ack(2)
    cp.register(a)
    assert cp.committed == 15


def test_empty_chunks_move_the_checkpoint() -> None:
    cp = Checkpoint(0)
    e = Chunk(ORIGIN, [], 0, 100)
    cp.register(e)
    e.expect(0, cp.on_chunk_done)
    assert cp.committed == 100


def test_reset_forgets_in_flight_chunks() -> None:
    cp = Checkpoint(0)
    a = chunk(0, 10)
    a.expect(2, cp.on_chunk_done)
    cp.register(a)
    cp.reset(0)
    a.ack(2)
    assert cp.committed == 0 and cp.idle


def test_on_advance_is_told_each_time_committed_moves_and_only_then() -> None:
    moves: list[int] = []
    cp = Checkpoint(0)
    cp.on_advance = lambda: moves.append(cp.committed)
    a, b = chunk(0, 10), chunk(10, 20)
    for ch in (a, b):
        ch.expect(1, cp.on_chunk_done)
        cp.register(ch)
    assert moves == []  # registered, nothing acknowledged
    b.ack(1)
    assert moves == []  # out of order: committed cannot move yet
    a.ack(1)
    assert moves == [20]  # one call for both chunks
    cp.reset(0)  # truncated: the position moved back
    assert moves == [20, 0]
