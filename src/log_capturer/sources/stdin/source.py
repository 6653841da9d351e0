"""The stdin source: lines from standard input until end of input.

Each read (up to 1 MiB, whatever is available) becomes one chunk of its whole
lines, so a fast pipe gives large chunks and an interactive one gives lines
as they come. The same decoding policy as files applies: UTF-8 with invalid
bytes kept as ``\\xNN`` escapes, a trailing ``\\r`` removed, empty lines
skipped, over-long lines truncated and marked. A :class:`Checkpoint` over the
bytes read tells when every line was acknowledged, so the agent can exit at
end of input once it has drained.

The reader runs under a :class:`Supervisor`: after a crash it is restarted
with back-off and goes on with the stream where it was. A read whose lines
were not all queued is split again from the splitter as it was before it, so
none of its lines is lost or queued twice.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from typing import Any

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.pipeline.dispatcher import Dispatcher, QueueClosed
from log_capturer.record import Chunk, Origin
from log_capturer.sources.base import BuildContext, SourceComponent
from log_capturer.sources.stdin.config import StdinConfig
from log_capturer.sources.supervise import Supervisor

log = logging.getLogger(__name__)

READ_BYTES = 1 << 20


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """``data[:limit]`` without splitting a UTF-8 sequence at the end."""
    cut = limit
    while cut > limit - 4 and cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut] if cut > limit - 4 else data[:limit]


class LineSplitter:
    """Turns a byte stream into whole decoded lines, truncating lines over ``max_bytes``."""

    __slots__ = ("_partial", "_skipping", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._partial = b""
        #: Inside an over-long line already emitted (cut): drop bytes up to the next newline.
        self._skipping = False

    def feed(self, data: bytes) -> tuple[list[str], set[int]]:
        """Lines completed by ``data`` and the indexes of those that were truncated."""
        lines: list[str] = []
        truncated: set[int] = set()
        buf = self._partial + data if self._partial else data
        if self._skipping:
            nl = buf.find(b"\n")
            if nl < 0:
                self._partial = b""
                return lines, truncated
            buf = buf[nl + 1 :]
            self._skipping = False
        last = buf.rfind(b"\n")
        if last < 0:
            self._partial = buf
        else:
            self._partial = buf[last + 1 :]
            limit = self.max_bytes
            for raw in buf[:last].split(b"\n"):
                line = raw[:-1] if raw[-1:] == b"\r" else raw
                if not line:
                    continue
                if len(line) > limit:
                    truncated.add(len(lines))
                    line = _cut_utf8(line, limit)
                lines.append(line.decode("utf-8", "backslashreplace"))
        if len(self._partial) > self.max_bytes:
            truncated.add(len(lines))
            lines.append(_cut_utf8(self._partial, self.max_bytes).decode("utf-8", "backslashreplace"))
            self._partial = b""
            self._skipping = True
        return lines, truncated

    def finish(self) -> str | None:
        """The last line when the input did not end with a newline."""
        rest = self._partial.rstrip(b"\r")
        self._partial = b""
        if self._skipping or not rest:
            return None
        return rest.decode("utf-8", "backslashreplace")


class StdinSource:
    name = "stdin_source"

    def __init__(self, config: StdinConfig, dispatcher: Dispatcher, metrics: Metrics, fd: int = 0) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.fd = fd
        self.origin = Origin("stdin", config.source_id, dict(config.labels), pipeline=config.pipeline)
        #: Positions are bytes of standard input; ``acked_lines`` counts acknowledged lines.
        self.checkpoint = Checkpoint(0)
        #: Set once end of input was reached and every line read was queued.
        self.finished = threading.Event()
        self.lines_read = 0
        self.bytes_read = 0
        self.supervisor = Supervisor(self.name, metrics)
        self._splitter = LineSplitter(config.max_line_bytes)
        #: A read being split and queued, and the splitter as it was before it.
        self._pending: tuple[bytes, LineSplitter] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def unacknowledged(self) -> int:
        return self.lines_read - self.checkpoint.acked_lines

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stdin-source", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop queueing lines. A read blocked on an open terminal cannot be interrupted; the
        reader thread is a daemon and ends with the process (it is given 1 s, not ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)

    def finish(self) -> None:
        """Nothing to save: standard input is read once."""

    def health(self) -> dict[str, Any]:
        """The source's state for ``/health`` (see :meth:`Supervisor.health`)."""
        return {**self.supervisor.health(), "finished": self.finished.is_set()}

    def stats(self) -> dict[str, Any]:
        return {
            "lines_read": self.lines_read,
            "unacknowledged": self.unacknowledged,
            "finished": self.finished.is_set(),
        }

    def _run(self) -> None:
        self.supervisor.run(self._read, self._stop)

    def _read(self) -> None:
        try:
            ended = False
            if self._pending is not None:  # taken before a crash, not all queued: take it again
                data, self._splitter = self._pending
                self._take(data)
                ended = not data
            while not ended:
                data = os.read(self.fd, READ_BYTES)
                if self._stop.is_set():
                    return
                self._take(data)
                ended = not data
                self.supervisor.ok()
            log.info("end of standard input", extra={"lines": self.lines_read, "bytes": self.bytes_read})
            self.finished.set()
        except OSError as exc:
            log.error("cannot read standard input: %s", exc.strerror)
            self.metrics.errors.labels("stdin_source", "read_failed").inc()
            self.finished.set()

    def _take(self, data: bytes) -> None:
        """Split ``data`` (b"": the end of input, the last line may lack its newline) and queue it."""
        self._pending = (data, copy.copy(self._splitter))
        if data:
            lines, truncated = self._splitter.feed(data)
        else:
            last = self._splitter.finish()
            lines, truncated = ([] if last is None else [last]), set()
        start = self.bytes_read
        if lines:
            self._submit(lines, truncated, start, start + len(data))
        self.bytes_read = start + len(data)
        self._pending = None

    def _submit(self, lines: list[str], truncated: set[int], start: int, end: int) -> None:
        chunk = Chunk(self.origin, lines, start=start, end=end, read_time_ns=time.time_ns())
        if truncated:
            chunk.truncated = frozenset(truncated)
            self.metrics.lines_truncated.labels("stdin").inc(len(truncated))
        self.metrics.source_lines_received.labels("stdin", "pipe").inc(len(lines))
        while not self.dispatcher.submit(chunk, self.checkpoint, timeout=0.25):
            if self._stop.is_set():
                raise QueueClosed
        self.lines_read += len(lines)


def build(config: StdinConfig, ctx: BuildContext) -> StdinSource | None:
    return StdinSource(config, ctx.dispatcher, ctx.metrics) if config.enabled else None


COMPONENT = SourceComponent(
    build=build,
    stats_key="stdin",
    idle_stats={"lines_read": 0, "unacknowledged": 0, "finished": False},
)
