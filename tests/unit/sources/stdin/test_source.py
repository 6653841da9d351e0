from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from log_capturer.config.schema import StdinConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Chunk
from log_capturer.sources.stdin.source import LineSplitter, StdinSource
from log_capturer.sources.supervise import Backoff
from tests.support import wait_until
from tests.unit.sources.harness import MemorySink, make_dispatcher


def test_lines_across_reads_crlf_and_blank_lines() -> None:
    s = LineSplitter(100)
    assert s.feed(b"one\r\ntw") == (["one"], set())
    assert s.feed(b"o\n\n\nthree\n") == (["two", "three"], set())
    assert s.finish() is None


def test_last_line_without_newline() -> None:
    s = LineSplitter(100)
    assert s.feed(b"a\nb") == (["a"], set())
    assert s.finish() == "b"


def test_invalid_utf8_is_escaped() -> None:
    s = LineSplitter(100)
    assert s.feed(b"caf\xc3\xa9 \xff\n") == (["caf\u00e9 \\xff"], set())


def test_long_lines_are_truncated_and_marked() -> None:
    s = LineSplitter(5)
    lines, cut = s.feed(b"abcdefgh\nok\n")
    assert (lines, cut) == (["abcde", "ok"], {0})
    s = LineSplitter(5)
    assert s.feed(b"abc") == ([], set())
    assert s.feed(b"defgh") == (["abcde"], {0})
    assert s.feed(b"ijk\nnext\n") == (["next"], set())
    assert s.finish() is None


def test_truncation_does_not_split_a_utf8_character() -> None:
    s = LineSplitter(5)
    lines, cut = s.feed("ab\u00e9\u00e9\u00e9\n".encode())
    assert lines == ["ab\u00e9"] and cut == {0}


class Piped:
    """A StdinSource reading the read end of a real pipe, against the real dispatcher."""

    def __init__(self) -> None:
        self.sink = MemorySink()
        self.metrics = Metrics()
        self.dispatcher = make_dispatcher(self.sink, self.metrics)
        self.r, self.w = os.pipe()
        self.source = StdinSource(StdinConfig(enabled=True), self.dispatcher, self.metrics, fd=self.r)
        self.source.supervisor.backoff = Backoff(0.01, 0.01)

    def write(self, data: bytes, then_lines: int) -> None:
        os.write(self.w, data)
        wait_until(lambda: self.source.lines_read >= then_lines, 10, f"{then_lines} lines read")

    def close(self) -> None:
        self.source.stop()
        self.dispatcher.close(5)
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def piped() -> Iterator[Piped]:
    p = Piped()
    yield p
    p.close()


def test_a_crash_after_splitting_a_read_takes_that_read_again(
    piped: Piped, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = LineSplitter.feed
    feeds = [0]

    def feed(self: LineSplitter, data: bytes) -> tuple[list[str], set[int]]:
        out = real(self, data)  # the splitter's state has moved on: the crash comes after
        feeds[0] += 1
        if feeds[0] == 2:
            raise RuntimeError("injected crash")
        return out

    monkeypatch.setattr(LineSplitter, "feed", feed)
    piped.source.start()
    piped.write(b"one\ntwo\npar", 2)
    piped.write(b"tial\nfour\n", 4)
    os.write(piped.w, b"last")
    os.close(piped.w)
    wait_until(piped.source.finished.is_set, 10, "the end of input")
    # finished means every line was queued; the sink takes the last chunk from its queue after
    wait_until(lambda: piped.source.unacknowledged == 0, 10, "every line acknowledged")
    assert piped.sink.lines() == ["one", "two", "partial", "four", "last"]
    h = piped.source.health()
    assert (
        h["status"] == "healthy" and h["restarts"] == 1 and h["last_error"] == "RuntimeError: injected crash"
    )
    assert piped.source.bytes_read == len(b"one\ntwo\npartial\nfour\nlast")


def test_a_crash_while_queueing_queues_those_lines_once(
    piped: Piped, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = piped.dispatcher.submit
    calls = [0]

    def submit(chunk: Chunk, checkpoint: Checkpoint | None, timeout: float | None = None) -> bool:
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("injected crash")
        return real(chunk, checkpoint, timeout)

    monkeypatch.setattr(piped.dispatcher, "submit", submit)
    piped.source.start()
    piped.write(b"a\nb\n", 2)
    piped.write(b"c\nd\n", 4)
    os.close(piped.w)
    wait_until(piped.source.finished.is_set, 10, "the end of input")
    # finished means every line was queued; the sink takes the last chunk from its queue after
    wait_until(lambda: piped.source.unacknowledged == 0, 10, "every line acknowledged")
    assert piped.sink.lines() == ["a", "b", "c", "d"]
    assert piped.source.supervisor.restarts == 1
    sample = {"component": "stdin_source", "error_type": "crash"}
    assert piped.metrics.registry.get_sample_value("errors_total", sample) == 1
