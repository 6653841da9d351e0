"""The dispatcher with sinks of our own interface: the source gate and a sink that raises."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from log_capturer.config.schema import DispatcherConfig, RouteConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.pipeline.routing import Router
from log_capturer.processing import Analyzer
from log_capturer.record import Chunk, Origin, ReleasedLines
from log_capturer.sinks.base import SendFailed, Sink, SinkHealth

ORIGIN = Origin("file", "/a.log")


class GateSink:
    """Acknowledges what it gets; refuses more lines while ``open`` is cleared; may raise."""

    name = "gate"
    sink_type = "test"

    def __init__(self, raises: int = 0) -> None:
        self.open = threading.Event()
        self.open.set()
        self.raises = raises
        self.calls = 0
        self.got: list[str] = []
        self.dead: list[tuple[int, str, str]] = []

    def start(self) -> None:
        pass

    def send(self, chunks: list[Chunk]) -> None:
        self.calls += 1
        if self.calls <= self.raises:
            raise RuntimeError("bug in the sink")
        for c in chunks:
            self.got.extend(c.lines)
            c.ack(len(c.lines))

    def accepting(self) -> bool:
        return self.open.is_set()

    def dead_letter(self, chunks: list[Chunk], reason: str, text: str) -> bool:
        self.dead.append((sum(len(c.lines) for c in chunks), reason, text))
        for c in chunks:
            c.ack(len(c.lines))
        return True

    def idle(self) -> None:
        pass

    def flush(self, timeout: float) -> int:
        return 0

    def stop(self, timeout: float) -> None:
        pass

    def health(self) -> SinkHealth:
        return SinkHealth(self.name, "healthy", "OK")

    def stats(self) -> dict[str, object]:
        return {}


def dispatcher(sink: GateSink, **cfg: object) -> Dispatcher:
    d = Dispatcher(
        DispatcherConfig.model_validate({"worker_count": 1, **cfg}), [sink], Analyzer(None), Metrics()
    )
    d.start()
    return d


def test_a_sink_that_does_not_accept_holds_the_source_until_it_does() -> None:
    sink = GateSink()
    d = dispatcher(sink)
    sink.open.clear()
    assert d.submit(Chunk(ORIGIN, ["a"]), None, timeout=0.1) is False  # HTTP ingest answers 429
    done = threading.Event()

    def source() -> None:
        d.submit(Chunk(ORIGIN, ["b"]), None)
        done.set()

    threading.Thread(target=source, daemon=True).start()
    assert not done.wait(0.3)
    assert d.queue.size == 0  # held before the queue: nothing buffered
    sink.open.set()
    assert done.wait(5)
    d.close(5)
    assert sink.got == ["b"]


def test_a_raising_sink_is_retried_then_its_lines_are_parked_and_acknowledged() -> None:
    sink = GateSink(raises=10)
    d = dispatcher(sink, max_retries=2, retry_base_delay=0.01)
    cp = Checkpoint()
    chunk = Chunk(ORIGIN, ["x", "y"], start=0, end=4)
    d.submit(chunk, cp)
    deadline = time.monotonic() + 5
    while not sink.dead and time.monotonic() < deadline:
        time.sleep(0.01)
    d.close(5)
    assert sink.calls == 3
    [(lines, reason, text)] = sink.dead
    assert (lines, reason) == (2, "all_sinks_failed") and "bug in the sink" in text
    assert cp.committed == 4


def test_a_sink_that_recovers_within_the_retries_delivers() -> None:
    sink = GateSink(raises=1)
    d = dispatcher(sink, max_retries=2, retry_base_delay=0.01)
    d.submit(Chunk(ORIGIN, ["x"]), None)
    deadline = time.monotonic() + 5
    while not sink.got and time.monotonic() < deadline:
        time.sleep(0.01)
    d.close(5)
    assert sink.got == ["x"] and sink.dead == []


def test_close_gives_all_threads_one_deadline_while_a_sink_holds_a_source() -> None:
    """A stalled sink holds one thread in send(); the others wait for the source it holds. The
    drain timeout is the whole stop's, not each thread's (two threads used to double it)."""
    release = threading.Event()

    class StuckSink(GateSink):
        def send(self, chunks: list[Chunk]) -> None:
            release.wait(30)
            super().send(chunks)

    sink = StuckSink()
    d = dispatcher(sink, worker_count=3, batch_size=1)  # "a" alone: "b" waits for the held source
    d.submit(Chunk(ORIGIN, ["a"]), None)
    d.submit(Chunk(ORIGIN, ["b"]), None)
    joins: list[tuple[float, float]] = []  # (when, timeout) of each join
    for t in d._threads:
        real = t.join

        def join(timeout: float | None = None, real: Callable[[float | None], None] = real) -> None:
            assert timeout is not None
            joins.append((time.monotonic(), timeout))
            real(timeout)

        t.join = join  # type: ignore[method-assign]
    start = time.monotonic()
    assert d.close(1.0) is False  # the sink still holds "a"
    assert len(joins) == 3
    # Every join ends by the one deadline: each used to get the whole second again, so the last
    # one ended 2 s after the start at least. The half second of slack is for a loaded machine
    # (the clock runs on between the start, the deadline and each join).
    assert all(when + timeout <= start + 1.0 + 0.5 for when, timeout in joins), (start, joins)
    release.set()


class PartialSink(GateSink):
    """Takes the first chunk of a batch, then fails on the next one, once (a bug in the sink)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_once = False

    def send(self, chunks: list[Chunk]) -> None:
        self.calls += 1
        for i, c in enumerate(chunks):
            if i == 1 and not self.failed_once:
                self.failed_once = True
                raise SendFailed(i, RuntimeError("bug while encoding the second chunk"))
            self.got.extend(c.lines)
            c.ack(len(c.lines))


def test_a_send_that_fails_midway_is_retried_with_only_the_chunks_not_taken() -> None:
    sink = PartialSink()
    d = dispatcher(sink, max_retries=2, retry_base_delay=0.01, flush_on_idle=False, batch_timeout=0.5)
    cp = Checkpoint()
    first = Chunk(ORIGIN, ["a"], start=0, end=2)
    second = Chunk(ORIGIN, ["b"], start=2, end=4)
    d.submit(first, cp)
    d.submit(second, cp)
    deadline = time.monotonic() + 5
    while cp.committed < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    d.close(5)
    # "a" was taken on the first attempt: it is not handed over again (no duplicate), nothing parked.
    assert sink.got == ["a", "b"] and sink.dead == []
    assert sink.calls == 2 and cp.committed == 4
    assert d.check()["status"] == "degraded" and "bug while encoding" in str(d.check()["message"])


class ExplodingAnalyzer(Analyzer):
    """Analysis fails on lines that contain "boom" (as a broken pipeline step or parser would)."""

    def analyze(self, chunk: Chunk) -> None:
        if any("boom" in line for line in chunk.lines):
            raise ValueError("the parser choked")
        super().analyze(chunk)


def test_a_chunk_analysis_fails_on_is_parked_and_the_thread_keeps_dispatching() -> None:
    sink = GateSink()
    metrics = Metrics()
    d = Dispatcher(
        DispatcherConfig.model_validate({"worker_count": 1}), [sink], ExplodingAnalyzer(None), metrics
    )
    d.start()
    cp = Checkpoint()
    d.submit(Chunk(ORIGIN, ["ok 1"], start=0, end=5), cp)
    d.submit(Chunk(ORIGIN, ["boom", "with it"], start=5, end=18), cp)
    d.submit(Chunk(ORIGIN, ["ok 2"], start=18, end=23), cp)
    deadline = time.monotonic() + 5
    while cp.committed < 23 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cp.committed == 23, "every line was delivered or parked: the checkpoint moves on"
    assert sink.got == ["ok 1", "ok 2"]
    [(lines, reason, text)] = sink.dead
    assert (lines, reason) == (2, "processing_error") and "the parser choked" in text
    assert all(t.is_alive() for t in d._threads)
    check = d.check()
    assert check["status"] == "degraded" and check["failed_chunks"] == 1
    assert "the parser choked" in str(check["message"])
    assert metrics.errors.labels("dispatcher", "processing_error")._value.get() == 1
    d.close(5)


def test_counters_written_by_many_threads_are_exact() -> None:
    """Four dispatch threads count the lines they dispatched (and eight sources the lines in): an
    unlocked ``+=`` whose right side runs Python code (a sum over the batch) loses counts when a
    thread switch falls between the read and the write (measured before the lock: 35,527 of
    40,000 dispatched)."""
    sink = GateSink()
    d = dispatcher(sink, queue_size=1_000_000, worker_count=4, batch_size=1)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: unlocked += loses counts
    try:
        threads = [
            threading.Thread(target=lambda: [d.submit(Chunk(ORIGIN, ["x"]), None) for _ in range(8000)])
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    d.close(10)
    assert d.lines_in == 64_000
    assert d.lines_dispatched == 64_000 == len(sink.got)


class PoisonSink(GateSink):
    """Cannot take a chunk that holds "poison" (a bug in its encoder), every time."""

    def send(self, chunks: list[Chunk]) -> None:
        self.calls += 1
        for i, c in enumerate(chunks):
            if "poison" in c.lines:
                raise SendFailed(i, TypeError("cannot encode it"))
            self.got.extend(c.lines)
            c.ack(len(c.lines))


def test_a_chunk_the_sink_always_fails_on_is_parked_alone_and_its_batch_mates_are_delivered() -> None:
    sink = PoisonSink()
    d = dispatcher(sink, max_retries=2, retry_base_delay=0.01, flush_on_idle=False, batch_timeout=0.5)
    cp = Checkpoint()
    for i, line in enumerate(["a", "poison", "b"]):
        d.submit(Chunk(ORIGIN, [line], start=i * 10, end=i * 10 + 10), cp)
    deadline = time.monotonic() + 5
    while cp.committed < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    d.close(5)
    assert sink.got == ["a", "b"], "each delivered once, none parked with the poisoned chunk"
    [(lines, reason, text)] = sink.dead
    assert (lines, reason) == (1, "all_sinks_failed") and "cannot encode it" in text
    assert cp.committed == 30


def test_pause_holds_every_source_until_resume_and_drained_says_when_all_was_handed_over() -> None:
    sink = GateSink()
    d = dispatcher(sink)
    assert d.submit(Chunk(ORIGIN, ["a", "b"]), None)
    wait = time.monotonic() + 5
    while not d.drained() and time.monotonic() < wait:
        time.sleep(0.01)
    assert d.drained() and sink.got == ["a", "b"]
    d.pause()
    assert d.submit(Chunk(ORIGIN, ["c"]), None, timeout=0.1) is False
    assert d.drained() and d.queue.size == 0
    # Sinks replaced while paused get what comes after the resume, armed for them.
    other = GateSink()
    d.replace([other], Analyzer(None))
    d.resume()
    chunk = Chunk(ORIGIN, ["d"])
    assert d.submit(chunk, None)
    d.close(5)
    assert other.got == ["d"] and sink.got == ["a", "b"] and chunk.done


def test_submit_many_queues_a_requests_chunks_together_and_counts_them() -> None:
    sink = GateSink()
    d = dispatcher(sink, batch_size=10_000)
    chunks = [
        Chunk(Origin("forward", "forward://127.0.0.1", {"tenant_id": f"t{i}"}), [f"{i}a", f"{i}b"])
        for i in range(16)
    ]
    assert d.submit_many(chunks, timeout=1) == 16
    assert all(c.registered and c.routed == (sink,) for c in chunks)
    assert d.close(5)
    assert sink.got == [line for c in chunks for line in c.lines]
    assert all(c.done for c in chunks)
    assert sink.calls == 1  # one hand-over for the 16 chunks
    assert d.lines_in == d.lines_dispatched == 32


def test_submit_many_at_a_closed_gate_queues_the_first_chunks_only() -> None:
    sink = GateSink()
    d = dispatcher(sink)
    sink.open.clear()
    chunks = [Chunk(ORIGIN, ["a"]), Chunk(ORIGIN, ["b"])]
    assert d.submit_many(chunks, timeout=0.1) == 0  # HTTP ingest answers 429
    assert d.queue.size == 0 and d.lines_in == 0
    sink.open.set()
    assert d.submit_many(chunks, timeout=1) == 2
    assert d.close(5)
    assert sink.got == ["a", "b"]


def test_submit_many_with_checkpoints_registers_the_queued_chunks_in_order_and_advances_each() -> None:
    sink = GateSink()
    d = Dispatcher(
        DispatcherConfig.model_validate({"worker_count": 1, "queue_size": 2}),
        [sink],
        Analyzer(None),
        Metrics(),
    )
    a, b = Checkpoint(0), Checkpoint(100)
    a1 = Chunk(ORIGIN, ["a1"], 0, 3)
    skipped = Chunk(ORIGIN, [], 3, 50)  # an over-long line skipped: no line, the position moves
    b1 = Chunk(Origin("file", "/b.log"), ["b1"], 100, 103)
    a2 = Chunk(ORIGIN, ["a2"], 50, 53)
    chunks, checkpoints = [a1, skipped, b1, a2], [a, a, b, a]
    # No worker yet: the queue holds 2 lines, so the first three chunks are queued and not a2.
    assert d.submit_many(chunks, timeout=0.1, checkpoints=checkpoints) == 3
    assert [c.registered for c in chunks] == [True, True, True, False]
    assert (a.in_flight_lines, b.in_flight_lines, a.committed, b.committed) == (1, 1, 0, 100)
    d.start()
    assert d.submit_many(chunks[3:], timeout=1, checkpoints=checkpoints[3:]) == 1
    assert d.close(5)
    assert sink.got == ["a1", "b1", "a2"]
    assert (a.committed, b.committed, a.acked_lines, b.acked_lines) == (53, 103, 2, 1)
    assert a.idle and b.idle and d.lines_in == 3


def test_submit_request_says_how_many_were_queued_and_whether_the_agent_stops() -> None:
    sink = GateSink()
    d = dispatcher(sink)
    assert d.submit_request([], timeout=1) == (0, False)
    assert d.submit_request([Chunk(ORIGIN, ["a"]), Chunk(ORIGIN, ["b"])], timeout=1) == (2, False)
    sink.open.clear()
    assert d.submit_request([Chunk(ORIGIN, ["c"])], timeout=0.1) == (0, False)  # the gate: 429
    d.queue.close()
    assert d.submit_request([Chunk(ORIGIN, ["d"])], timeout=0.1) == (0, True)
    sink.open.set()
    assert d.close(5)
    assert sink.got == ["a", "b"]


class EncodingSink(GateSink):
    """Holds its chunks' records encoded once ``send`` returned (never reads the lines again)."""

    releases_text = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.kept: list[Chunk] = []

    def send(self, chunks: list[Chunk]) -> None:
        self.got.extend(line for c in chunks for line in c.lines)
        self.kept += chunks  # acknowledged later, as a delivery report would


def test_a_chunk_s_text_is_released_once_every_sink_it_went_to_holds_it_encoded() -> None:
    kafka, other = EncodingSink("kafka"), GateSink()
    other.name = "local_file"
    router: Router[Sink] = Router(
        [RouteConfig.model_validate({"source_types": ["syslog"], "sinks": ["kafka"]})],
        [("kafka", kafka), ("local_file", other)],
    )
    d = Dispatcher(
        DispatcherConfig.model_validate({"worker_count": 1}),
        [kafka, other],
        Analyzer(None),
        Metrics(),
        router,
    )
    d.start()
    only_kafka = Chunk(Origin("syslog", "udp"), ["k1", "k2"])
    both = Chunk(ORIGIN, ["f1"])
    d.submit(only_kafka, None)
    d.submit(both, None)
    deadline = time.monotonic() + 5
    while len(kafka.kept) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert kafka.got == ["k1", "k2", "f1"] and other.got == ["f1"]
    # Held by the sinks, unacknowledged: only the chunk no other sink reads lost its text.
    assert isinstance(only_kafka.lines, ReleasedLines) and len(only_kafka.lines) == 2
    assert both.lines == ["f1"]
    for c in kafka.kept:
        c.ack(len(c.lines))
    d.close(5)
    assert only_kafka.done and both.done


def test_a_chunk_a_releasing_sink_fails_on_is_parked_with_its_text() -> None:
    class Failing(EncodingSink):
        def send(self, chunks: list[Chunk]) -> None:
            raise RuntimeError("bug in the sink")

        def dead_letter(self, chunks: list[Chunk], reason: str, text: str) -> bool:
            self.got.extend(line for c in chunks for line in c.lines)  # the DLQ entry reads them
            return super().dead_letter(chunks, reason, text)

    sink = Failing("kafka")
    d = dispatcher(sink, max_retries=1, retry_base_delay=0.01)
    chunk = Chunk(ORIGIN, ["x", "y"])
    d.submit(chunk, None)
    deadline = time.monotonic() + 5
    while not chunk.done and time.monotonic() < deadline:
        time.sleep(0.01)
    d.close(5)
    assert sink.got == ["x", "y"] and chunk.done
    assert isinstance(chunk.lines, ReleasedLines)
