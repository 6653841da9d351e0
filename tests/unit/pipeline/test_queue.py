from __future__ import annotations

import contextlib
import threading
import time

import pytest

from log_capturer.pipeline.queue import ChunkQueue, QueueClosed
from log_capturer.record import Chunk, Origin

ORIGIN = Origin("file", "/a.log")


def c(n: int, source: str = "/a.log") -> Chunk:
    return Chunk(Origin("file", source), ["x"] * n)


def lines(taken: tuple[list[Chunk], list[str]] | None) -> int:
    assert taken is not None
    return sum(len(x) for x in taken[0])


def test_put_blocks_when_full_and_times_out() -> None:
    q = ChunkQueue(10)
    assert q.put("a", c(8))
    assert q.put("a", c(3), timeout=0.05) is False
    assert q.size == 8 and q.utilization == 0.8


def test_an_oversized_chunk_is_accepted_into_an_empty_queue() -> None:
    q = ChunkQueue(10)
    assert q.put("a", c(50), timeout=0.05)


def test_take_gathers_up_to_max_lines_and_frees_space() -> None:
    q = ChunkQueue(100)
    for _ in range(5):
        q.put("a", c(10))
    assert lines(q.take(25, 1.0, flush_on_idle=True)) == 30  # whole chunks
    assert q.size == 20


def test_take_waits_for_a_full_batch_without_flush_on_idle() -> None:
    q = ChunkQueue(100)
    q.put("a", c(5))
    threading.Timer(0.05, lambda: q.put("a", c(5))).start()
    taken = q.take(10, 5.0, flush_on_idle=False)
    assert taken is not None and len(taken[0]) == 2 and taken[1] == ["a"]


def test_a_partial_batch_also_fills_from_other_sources_that_become_ready() -> None:
    q = ChunkQueue(100)
    q.put("a", c(5))
    threading.Timer(0.05, lambda: q.put("b", c(5))).start()
    taken = q.take(10, 5.0, flush_on_idle=False)
    assert taken is not None and taken[1] == ["a", "b"]


def test_take_returns_a_partial_batch_after_max_wait() -> None:
    q = ChunkQueue(100)
    q.put("a", c(5))
    taken = q.take(10, 0.05, flush_on_idle=False)
    assert taken is not None and len(taken[0]) == 1


def test_a_held_source_is_not_given_to_another_worker_until_released() -> None:
    q = ChunkQueue(100)
    first, second = c(5), c(5)
    q.put("a", first)
    q.put("a", second)
    assert q.take(5, 0.0, True) == ([first], ["a"])
    # "a" is held: its next chunk waits, even for another worker.
    got: list[tuple[list[Chunk], list[str]] | None] = []
    t = threading.Thread(target=lambda: got.append(q.take(5, 0.0, True)))
    t.start()
    t.join(0.1)
    assert t.is_alive() and not got
    q.release(["a"])
    t.join(5)
    assert got == [([second], ["a"])]


def test_other_sources_go_to_other_workers_while_one_is_held() -> None:
    q = ChunkQueue(100)
    q.put("a", c(5, "/a"))
    q.put("a", c(5, "/a"))
    q.put("b", c(5, "/b"))
    one = q.take(5, 0.0, True)
    two = q.take(5, 0.0, True)
    assert one is not None and two is not None
    assert one[1] == ["a"] and two[1] == ["b"]


def test_sources_are_served_in_turn() -> None:
    q = ChunkQueue(1000)
    for _ in range(3):
        q.put("a", c(5))
    q.put("b", c(5))
    order = []
    for _ in range(4):
        taken = q.take(5, 0.0, True)
        assert taken is not None
        order += taken[1]
        q.release(taken[1])
    assert order == ["a", "b", "a", "a"]


def test_one_source_keeps_its_order_across_two_workers() -> None:
    q = ChunkQueue(10_000)
    chunks = [Chunk(ORIGIN, [str(i)]) for i in range(2000)]
    out: list[str] = []
    out_lock = threading.Lock()

    def worker() -> None:
        while (taken := q.take(7, 0.0, True)) is not None:
            with out_lock:
                for ch in taken[0]:
                    out.extend(ch.lines)
            q.release(taken[1])

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for ch in chunks:
        q.put("a", ch)
    q.close()
    for t in threads:
        t.join(10)
    assert out == [str(i) for i in range(2000)]


def test_close_drains_then_ends_and_refuses_new_chunks() -> None:
    q = ChunkQueue(100)
    q.put("a", c(3))
    q.close()
    taken = q.take(10, 0.0, True)
    assert taken is not None
    q.release(taken[1])
    assert q.take(10, 0.0, True) is None
    with pytest.raises(QueueClosed):
        q.put("a", c(1))


def test_an_idle_worker_waits_for_a_held_source_after_close_then_ends() -> None:
    q = ChunkQueue(100)
    q.put("a", c(3))
    q.put("a", c(3))
    q.close()
    taken = q.take(3, 0.0, True)
    assert taken is not None
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(q.take(3, 0.0, True)))
    t.start()
    t.join(0.1)
    assert t.is_alive()  # the second chunk of "a" is still to come
    q.release(taken[1])
    t.join(5)
    assert got and got[0] is not None
    assert q.take(3, 0.0, True) is None


def test_a_blocked_put_wakes_when_space_frees() -> None:
    q = ChunkQueue(10)
    q.put("a", c(10))
    done = threading.Event()

    def producer() -> None:
        q.put("a", c(5))
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.05)
    q.take(10, 0.0, True)
    assert done.wait(5)
    t.join()


def test_the_byte_limit_also_holds_the_sources() -> None:
    q = ChunkQueue(1000, max_bytes=100)
    assert q.put("a", Chunk(ORIGIN, ["y" * 60]))
    assert q.put("a", Chunk(ORIGIN, ["y" * 60]), timeout=0.05) is False  # 120 bytes > 100
    assert q.text_bytes == 60 and q.utilization == 0.6
    assert q.take(10, 1.0, flush_on_idle=True) is not None
    assert q.text_bytes == 0 and q.empty


def test_the_byte_limit_counts_utf8_bytes_not_characters() -> None:
    # 40 characters, 80 bytes each: two of them are 160 bytes, more than the limit of 100.
    q = ChunkQueue(1000, max_bytes=100)
    assert q.put("a", Chunk(ORIGIN, ["é" * 40]))
    assert q.put("a", Chunk(ORIGIN, ["é" * 40]), timeout=0.05) is False
    assert q.text_bytes == 80


def test_workers_asleep_in_take_are_each_woken_by_a_put_and_none_is_missed() -> None:
    # put() notifies only when a worker waits: every chunk must still reach a worker, with
    # workers asleep, busy or racing the producers.
    q = ChunkQueue(50)
    got: list[int] = []
    got_lock = threading.Lock()

    def worker() -> None:
        while (taken := q.take(7, 0.0, True)) is not None:
            with got_lock:
                got.extend(len(x) for x in taken[0])
            q.release(taken[1])

    workers = [threading.Thread(target=worker) for _ in range(3)]
    for t in workers:
        t.start()

    def producer(name: str) -> None:
        with contextlib.suppress(QueueClosed):  # only when a lost wake-up left it blocked
            for _ in range(400):
                q.put(name, c(1, name))

    producers = [threading.Thread(target=producer, args=(f"/{i}.log",)) for i in range(4)]
    for t in producers:
        t.start()
    # Every chunk reaches a worker before close() (which wakes every thread anyway); one
    # deadline for all, so a lost wake-up fails in seconds.
    deadline = time.monotonic() + 10
    for t in producers:
        t.join(max(0.0, deadline - time.monotonic()))
    while sum(got) < 1600 and time.monotonic() < deadline:
        time.sleep(0.01)
    delivered = sum(got)
    q.close()
    for t in workers:
        t.join(30)
    assert not any(t.is_alive() for t in workers)
    assert delivered == 1600 and q.size == 0
    assert (q._waiting_work, q._waiting_full, q._waiting_more) == (0, 0, 0)


def test_put_many_queues_in_order_and_a_worker_takes_them_in_one_batch() -> None:
    q = ChunkQueue(100)
    chunks = [c(3) for _ in range(4)] + [c(2, "/b.log")]
    got: list[tuple[list[Chunk], list[str]] | None] = []
    worker = threading.Thread(target=lambda: got.append(q.take(100, 1.0, flush_on_idle=True)))
    worker.start()
    time.sleep(0.05)  # the worker waits for work
    assert q.put_many([(x.origin.source_id, x) for x in chunks]) == 5
    worker.join(5)
    assert got and got[0] is not None
    batch, keys = got[0]
    assert batch == chunks and keys == ["/a.log", "/b.log"]  # all of them, woken once
    assert q.size == 0


def test_put_many_stops_at_the_first_chunk_without_room_and_says_how_many() -> None:
    q = ChunkQueue(10)
    assert q.put_many([("a", c(4)), ("a", c(4)), ("a", c(4)), ("a", c(1))], timeout=0.05) == 2
    assert q.size == 8


def test_put_many_on_a_closed_queue_raises_before_the_first_and_counts_after() -> None:
    q = ChunkQueue(10)
    q.close()
    with pytest.raises(QueueClosed):
        q.put_many([("a", c(1))])
    q2 = ChunkQueue(5)
    threading.Timer(0.05, q2.close).start()
    assert q2.put_many([("a", c(4)), ("a", c(4))], timeout=5) == 1  # waited for room, then closed
