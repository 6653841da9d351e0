"""The dispatcher: sources submit chunks, workers analyse them and hand batches to the sinks.

``submit`` arms each chunk so that its acknowledgement by *every* sink moves
the source's checkpoint; it blocks while the queue is full, and while a sink
is not accepting (critical backpressure, an open circuit breaker): that is how
the sources pause their reads instead of buffering more. Any worker may take
any source's chunks, but a source is held by one worker at a time, from taking
its chunks until the sinks have them (:class:`.queue.ChunkQueue`), so the lines
of one source reach the sinks in read order and the workers share the load
whatever the number of sources.

A sink's ``send`` must not raise; if one does (a bug), the batch is handed to
it again ``max_retries`` times (``retry_base_delay``, doubling), then its lines
are parked in the DLQ with the reason ``all_sinks_failed``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from log_capturer.config.schema import DispatcherConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.pipeline.queue import ChunkQueue, QueueClosed
from log_capturer.processing import Analyzer
from log_capturer.record import Chunk
from log_capturer.sinks.base import Sink

log = logging.getLogger(__name__)

__all__ = ["Dispatcher", "QueueClosed"]

#: Waits of a source held by a sink that does not accept lines: 10 ms doubling up to 250 ms.
GATE_FIRST_WAIT = 0.01
GATE_MAX_WAIT = 0.25


class Dispatcher:
    def __init__(
        self,
        config: DispatcherConfig,
        sinks: Sequence[Sink],
        analyzer: Analyzer,
        metrics: Metrics,
    ) -> None:
        if not sinks:
            raise ValueError("at least one sink is needed")
        self.config = config
        self.sinks = list(sinks)
        self.analyzer = analyzer
        self.metrics = metrics
        self.queue = ChunkQueue(config.queue_size, config.queue_max_bytes)
        self._threads: list[threading.Thread] = []
        self.lines_in = 0
        self.lines_dispatched = 0

    # -- sources side --------------------------------------------------------------------------
    def submit(self, chunk: Chunk, checkpoint: Checkpoint | None, timeout: float | None = None) -> bool:
        """Queue a chunk; its full acknowledgement advances ``checkpoint``.

        Blocks while the queue is full (up to ``timeout``; False when it expires,
        and the chunk was not taken). Raises :class:`QueueClosed` when stopping.
        """
        n = len(chunk.lines)
        on_done = checkpoint.on_chunk_done if checkpoint is not None else None
        deadline = None if timeout is None else time.monotonic() + timeout
        if n and not self._wait_accepting(deadline):
            return False
        chunk.expect(n * len(self.sinks) if n else 0, None)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if n and not self.queue.put(chunk.origin.source_id, chunk, remaining):
            return False
        if checkpoint is not None:
            # Registered after queueing: a chunk acknowledged before this point is
            # found done here and committed at once.
            checkpoint.register(chunk)
        chunk.on_done(on_done)
        if n == 0:
            return True
        self.lines_in += n
        origin = chunk.origin
        pipeline = self.analyzer.pipeline_name(chunk) or "default"
        self.metrics.logs_processed.labels(origin.source_type, origin.source_id, pipeline).inc(n)
        self.metrics.dispatcher_queue_utilization.set(self.queue.utilization)
        return True

    def _wait_accepting(self, deadline: float | None) -> bool:
        """Hold the source while a sink refuses more lines (backpressure). False when ``deadline`` passed."""
        if all(s.accepting() for s in self.sinks):
            return True
        step = GATE_FIRST_WAIT
        while True:
            if self.queue.closed:
                raise QueueClosed
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            wait = step if deadline is None else min(step, deadline - now)
            time.sleep(wait)
            if all(s.accepting() for s in self.sinks):
                return True
            step = min(step * 2, GATE_MAX_WAIT)

    # -- workers -------------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.config.worker_count):
            t = threading.Thread(target=self._work, name=f"dispatch-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def _work(self) -> None:
        cfg = self.config
        queue = self.queue
        while True:
            taken = queue.take(cfg.batch_size, cfg.batch_timeout, cfg.flush_on_idle)
            if taken is None:
                return
            batch, sources = taken
            self.metrics.dispatcher_queue_utilization.set(queue.utilization)
            try:
                for chunk in batch:
                    self.analyzer.analyze(chunk)
                for sink in self.sinks:
                    self._send(sink, batch)
            finally:
                queue.release(sources)
            self.lines_dispatched += sum(len(c.lines) for c in batch)
            if queue.empty:
                for sink in self.sinks:
                    sink.idle()
            self.metrics.dispatcher_queue_utilization.set(self.queue.utilization)

    def _send(self, sink: Sink, batch: list[Chunk]) -> None:
        cfg = self.config
        error = ""
        for attempt in range(cfg.max_retries + 1):
            try:
                sink.send(batch)
                return
            except Exception as exc:
                # A bug, not a delivery problem (sinks own their retries): count it, log it loudly.
                self.metrics.errors.labels("dispatcher", "sink_exception").inc()
                log.exception("sink %s raised while sending (attempt %d)", sink.name, attempt + 1)
                error = f"{type(exc).__name__}: {exc}"
            if attempt < cfg.max_retries and not self.queue.closed:
                time.sleep(cfg.retry_base_delay * 2**attempt)
        text = f"the sink raised on {cfg.max_retries + 1} attempts: {error}"
        if not sink.dead_letter(batch, "all_sinks_failed", text):
            log.error("could not park the batch either; its lines stay unacknowledged (re-read on restart)")

    def close(self, timeout: float) -> bool:
        """Stop accepting chunks and let workers hand over what is queued. True if they finished."""
        self.queue.close()
        # One deadline for all: a thread waiting for a source that another thread holds (both
        # held by a stalled sink) must not add its own timeout to the drain.
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)
