from __future__ import annotations

import threading

import pytest

from log_capturer.pipeline.queue import ChunkQueue, QueueClosed
from log_capturer.record import Chunk, Origin

ORIGIN = Origin("file", "/a.log")


def c(n: int) -> Chunk:
    return Chunk(ORIGIN, ["x"] * n)


def test_put_blocks_when_full_and_times_out() -> None:
    q = ChunkQueue(10, 1)
    assert q.put(0, c(8))
    assert q.put(0, c(3), timeout=0.05) is False
    assert q.size == 8 and q.utilization == 0.8


def test_an_oversized_chunk_is_accepted_into_an_empty_queue() -> None:
    q = ChunkQueue(10, 1)
    assert q.put(0, c(50), timeout=0.05)


def test_take_gathers_up_to_max_lines_and_frees_space() -> None:
    q = ChunkQueue(100, 1)
    for _ in range(5):
        q.put(0, c(10))
    batch = q.take(0, 25, 1.0, flush_on_idle=True)
    assert batch is not None and sum(len(x) for x in batch) == 30  # whole chunks
    assert q.size == 20


def test_take_waits_for_a_full_batch_without_flush_on_idle() -> None:
    q = ChunkQueue(100, 1)
    q.put(0, c(5))
    threading.Timer(0.05, lambda: q.put(0, c(5))).start()
    batch = q.take(0, 10, 5.0, flush_on_idle=False)
    assert batch is not None and len(batch) == 2


def test_take_returns_a_partial_batch_after_max_wait() -> None:
    q = ChunkQueue(100, 1)
    q.put(0, c(5))
    batch = q.take(0, 10, 0.05, flush_on_idle=False)
    assert batch is not None and len(batch) == 1


def test_shards_are_independent() -> None:
    q = ChunkQueue(100, 2)
    q.put(1, c(3))
    assert q.take(1, 10, 0.0, True) is not None
    q.close()
    assert q.take(0, 10, 0.0, True) is None


def test_close_drains_then_ends_and_refuses_new_chunks() -> None:
    q = ChunkQueue(100, 1)
    q.put(0, c(3))
    q.close()
    assert q.take(0, 10, 0.0, True) is not None
    assert q.take(0, 10, 0.0, True) is None
    with pytest.raises(QueueClosed):
        q.put(0, c(1))


def test_a_blocked_put_wakes_when_space_frees() -> None:
    q = ChunkQueue(10, 1)
    q.put(0, c(10))
    done = threading.Event()

    def producer() -> None:
        q.put(0, c(5))
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.05)
    q.take(0, 10, 0.0, True)
    assert done.wait(5)
    t.join()


def test_the_byte_limit_also_holds_the_sources() -> None:
    q = ChunkQueue(1000, 1, max_bytes=100)
    assert q.put(0, Chunk(ORIGIN, ["y" * 60]))
    assert q.put(0, Chunk(ORIGIN, ["y" * 60]), timeout=0.05) is False  # 120 bytes > 100
    assert q.nbytes == 60 and q.utilization == 0.6
    batch = q.take(0, 10, 1.0, flush_on_idle=True)
    assert batch is not None and q.nbytes == 0
