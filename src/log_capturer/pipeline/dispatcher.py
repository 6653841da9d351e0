"""The dispatcher: sources submit chunks, workers analyse them and hand batches to the sinks.

``submit`` arms each chunk so that its acknowledgement by *every* sink moves
the source's checkpoint; it blocks while the queue is full, and while a sink
is not accepting (critical backpressure, an open circuit breaker): that is how
the sources pause their reads instead of buffering more. Any worker may take
any source's chunks, but a source is held by one worker at a time, from taking
its chunks until the sinks have them (:class:`.queue.ChunkQueue`), so the lines
of one source reach the sinks in read order and the workers share the load
whatever the number of sources.

A sink's ``send`` must not raise for a delivery problem. If it cannot take a
chunk (a bug), it raises :class:`~log_capturer.sinks.base.SendFailed`, which
says how many chunks it took; only the others are handed to it again,
``max_retries`` times (``retry_base_delay``, doubling), then their lines are
parked in the DLQ with the reason ``all_sinks_failed``.

A chunk that analysis (pipelines, levels, keys) fails on is parked in the DLQ
with the reason ``processing_error``; the rest of the batch is shipped. Either
way the dispatch thread goes on, the failure is counted in ``errors_total``
and logged, and ``/health`` shows it (:meth:`Dispatcher.check`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from log_capturer.observability.metrics import Children, Metrics
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.pipeline.config import DispatcherConfig
from log_capturer.pipeline.queue import ChunkQueue, QueueClosed
from log_capturer.pipeline.routing import Router
from log_capturer.processing import Analyzer
from log_capturer.record import Chunk, Origin
from log_capturer.sinks.base import SendFailed, Sink
from log_capturer.sinks.kafka.quiet import Repeats

log = logging.getLogger(__name__)

__all__ = ["Dispatcher", "QueueClosed"]

#: Waits of a source held by a sink that does not accept lines: 10 ms doubling up to 250 ms.
GATE_FIRST_WAIT = 0.01
GATE_MAX_WAIT = 0.25
#: How long /health shows the dispatcher degraded after a chunk failed analysis or a sink raised.
RECENT_FAILURE = 300.0


class Dispatcher:
    def __init__(
        self,
        config: DispatcherConfig,
        sinks: Sequence[Sink],
        analyzer: Analyzer,
        metrics: Metrics,
        router: Router[Sink] | None = None,
    ) -> None:
        if not sinks:
            raise ValueError("at least one sink is needed")
        self.config = config
        self.sinks = list(sinks)
        #: The sinks of each origin (``routes``); every sink when there are none.
        self.router: Router[Sink] = router or Router([], [(s.name, s) for s in self.sinks])
        self.analyzer = analyzer
        self.metrics = metrics
        #: ``logs_processed`` by source type, source and pipeline, looked up once each.
        self._processed = Children(metrics.logs_processed)
        self.queue = ChunkQueue(config.queue_size, config.queue_max_bytes)
        self._threads: list[threading.Thread] = []
        #: Counters written by several threads (sources submit, workers dispatch): under _count_lock.
        self._count_lock = threading.Lock()
        self.lines_in = 0
        self.lines_dispatched = 0
        #: Chunks parked because analysis failed on them, and failures of the workers themselves.
        self.failed_chunks = 0
        self.worker_errors = 0
        self.last_failure = ""
        self._last_failure_at = 0.0
        #: A configuration reload holds the sources at the gate (:meth:`pause`); ``_submitting``:
        #: submits past the gate and not done yet (both under _count_lock).
        self._paused = False
        self._submitting = 0
        #: One log line (with its traceback) per kind of failure per 10 s; the metric counts all.
        self._repeats = Repeats()

    # -- sources side --------------------------------------------------------------------------
    def submit(self, chunk: Chunk, checkpoint: Checkpoint | None, timeout: float | None = None) -> bool:
        """Queue a chunk; its full acknowledgement advances ``checkpoint``.

        Blocks while the queue is full (up to ``timeout``; False when it expires,
        and the chunk was not taken). Raises :class:`QueueClosed` when stopping.
        """
        n = len(chunk.lines)
        on_done = checkpoint.on_chunk_done if checkpoint is not None else None
        deadline = None if timeout is None else time.monotonic() + timeout
        if n:
            passed = self._wait_accepting(chunk.origin, deadline)
            if passed is None:
                return False
            sinks = passed
        else:
            sinks = self.router.sinks_for(chunk.origin)
        queued = False
        try:
            chunk.routed = sinks
            chunk.expect(n * len(sinks) if n else 0, None)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if n and not self.queue.put(chunk.origin.source_id, chunk, remaining):
                return False
            if checkpoint is not None:
                # Registered after queueing: a chunk acknowledged before this point is
                # found done here and committed at once.
                checkpoint.register(chunk)
            chunk.on_done(on_done)
            chunk.registered = True
            if n == 0:
                return True
            queued = True
        finally:
            if n:
                with self._count_lock:
                    self._submitting -= 1
                    if queued:
                        self.lines_in += n
        origin = chunk.origin
        pipeline = self.analyzer.pipeline_name(chunk) or "default"
        self._processed.get(origin.source_type, origin.source_id, pipeline).inc(n)
        self.metrics.dispatcher_queue_utilization.set(self.queue.utilization)
        return True

    def submit_many(
        self,
        chunks: Sequence[Chunk],
        timeout: float | None = None,
        checkpoints: Sequence[Checkpoint | None] | None = None,
    ) -> int:
        """Queue ``chunks`` in order, as :meth:`submit` would one by one, handed to the workers at
        once (:meth:`ChunkQueue.put_many`): one wake-up for all of them instead of one per chunk
        (a listener's request or message, a file source's loop turn).

        Each chunk passes the gate and is armed as :meth:`submit` does; with ``checkpoints`` (one
        per chunk, None for a chunk without one), each queued chunk's full acknowledgement
        advances its checkpoint, registered in the order given (a checkpoint's chunks must come
        in read order). Returns how many were queued (the first ones; fewer when ``timeout``
        expired at the gate or on a full queue: the caller submits the others again). Raises
        :class:`QueueClosed` when stopping before the first was queued.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        armed: list[Chunk] = []
        passed = count = put_lines = 0
        try:
            for chunk in chunks:
                n = len(chunk.lines)
                if n:
                    sinks = self._wait_accepting(chunk.origin, deadline)
                    if sinks is None:
                        break
                    passed += 1
                else:
                    sinks = self.router.sinks_for(chunk.origin)
                chunk.routed = sinks
                chunk.expect(n * len(sinks) if n else 0, None)
                armed.append(chunk)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            items = [(c.origin.source_id, c) for c in armed if c.lines]
            put = self.queue.put_many(items, remaining) if items else 0
            # The armed chunks up to the last one queued (the empty ones among them need no queue).
            for chunk in armed:
                if chunk.lines:
                    if not put:
                        break
                    put -= 1
                    put_lines += len(chunk.lines)
                checkpoint = None if checkpoints is None else checkpoints[count]
                if checkpoint is not None:
                    # Registered after queueing, as by submit: found done here if acknowledged.
                    checkpoint.register(chunk)
                    chunk.on_done(checkpoint.on_chunk_done)
                chunk.registered = True
                count += 1
        finally:
            if passed:
                with self._count_lock:
                    self._submitting -= passed
                    self.lines_in += put_lines
        counts: dict[tuple[str, str, str], int] = {}
        for chunk in armed[:count]:
            if chunk.lines:
                origin = chunk.origin
                key = (origin.source_type, origin.source_id, self.analyzer.pipeline_name(chunk) or "default")
                counts[key] = counts.get(key, 0) + len(chunk.lines)
        for key, n in counts.items():
            self._processed.get(*key).inc(n)
        self.metrics.dispatcher_queue_utilization.set(self.queue.utilization)
        return count

    def submit_request(self, chunks: Sequence[Chunk], timeout: float | None) -> tuple[int, bool]:
        """:meth:`submit_many` for the chunks of one request or message of a listener: how many
        were queued (the first ones), and whether the agent is stopping (the queue closed before
        all of them were)."""
        if not chunks:
            return 0, False
        try:
            queued = self.submit_many(chunks, timeout)
        except QueueClosed:
            return 0, True
        return queued, queued < len(chunks) and self.queue.closed

    def _wait_accepting(self, origin: Origin, deadline: float | None) -> tuple[Sink, ...] | None:
        """Hold the source while one of its sinks refuses more lines (backpressure) or a reload
        holds every source (:meth:`pause`). Its sinks, or None when ``deadline`` passed; passing
        counts the caller in ``_submitting``. A sink stalled for its ``timeout`` accepts again
        (what waits for it overflows to the local DLQ), so a broken sink holds its sources at
        most that long."""
        sinks = self._pass_gate(origin)
        if sinks is not None:
            return sinks
        step = GATE_FIRST_WAIT
        while True:
            if self.queue.closed:
                raise QueueClosed
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            wait = step if deadline is None else min(step, deadline - now)
            time.sleep(wait)
            sinks = self._pass_gate(origin)
            if sinks is not None:
                return sinks
            step = min(step * 2, GATE_MAX_WAIT)

    def _pass_gate(self, origin: Origin) -> tuple[Sink, ...] | None:
        """The origin's sinks if they all accept and no reload holds the gate. The router is read
        under the lock: a reload replaces it only while no submit is past the gate."""
        with self._count_lock:
            if self._paused:
                return None
            self._submitting += 1
            router = self.router
        sinks = router.sinks_for(origin)
        if all(s.accepting() for s in sinks):
            return sinks
        with self._count_lock:
            self._submitting -= 1
        return None

    # -- configuration reload ------------------------------------------------------------------
    def pause(self) -> None:
        """Hold every source at the gate (as backpressure does) until :meth:`resume`."""
        with self._count_lock:
            self._paused = True

    def resume(self) -> None:
        with self._count_lock:
            self._paused = False

    def drained(self) -> bool:
        """While paused: every line taken was handed to the sinks (none queued, none on its way)."""
        with self._count_lock:
            return self._submitting == 0 and self.lines_dispatched == self.lines_in

    def replace(self, sinks: Sequence[Sink], analyzer: Analyzer, router: Router[Sink] | None = None) -> None:
        """Hand what comes next to ``sinks`` (chosen by ``router``), analysed by ``analyzer``
        (while paused and drained)."""
        if not sinks:
            raise ValueError("at least one sink is needed")
        with self._count_lock:
            self.sinks = list(sinks)
            self.router = router or Router([], [(s.name, s) for s in self.sinks])
            self.analyzer = analyzer

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
                self._dispatch(batch)
            except Exception as exc:
                # A bug beyond a sink or an analysis step: this batch's lines stay unacknowledged
                # (the source's checkpoint waits, a restart reads them again), the thread goes on.
                self._failure("worker_error", f"dispatching a batch failed: {type(exc).__name__}: {exc}", exc)
            finally:
                queue.release(sources)
            n = sum(len(c.lines) for c in batch)
            with self._count_lock:
                self.lines_dispatched += n
            if queue.empty:
                for sink in self.sinks:
                    sink.idle()
            self.metrics.dispatcher_queue_utilization.set(self.queue.utilization)

    def _dispatch(self, batch: list[Chunk]) -> None:
        """Analyse the batch (a chunk that fails is parked) and hand the rest to every sink."""
        ready: list[Chunk] = []
        for chunk in batch:
            try:
                self.analyzer.analyze(chunk)
            except Exception as exc:
                text = f"analysis failed ({type(exc).__name__}: {exc})"
                where = f"on {len(chunk.lines)} lines from {chunk.origin.source_id}"
                self._failure("processing_error", f"{text} {where}", exc)
                with self._count_lock:
                    self.failed_chunks += 1
                self._park([chunk], "processing_error", text)
                continue
            ready.append(chunk)
        if not ready:
            return
        for sink in self.sinks:
            mine = [c for c in ready if sink in self._routed(c)]
            if mine:
                self._send(sink, mine)
        # Every sink took its chunks (or parked them): where each holds the records encoded, the
        # lines' text is held only there from now on, not a second time in the chunk.
        for chunk in ready:
            if all(getattr(sink, "releases_text", False) for sink in self._routed(chunk)):
                chunk.release_text()

    def _park(self, chunks: list[Chunk], reason: str, text: str) -> None:
        """Each sink the chunks were routed to parks them (each acknowledges its share)."""
        for sink in self.sinks:
            mine = [c for c in chunks if sink in self._routed(c)]
            if mine and not sink.dead_letter(mine, reason, text):
                log.error(
                    "sink %s could not park %d lines either; they stay unacknowledged (read again on "
                    "restart)",
                    sink.name,
                    sum(len(c.lines) for c in chunks),
                )

    def _routed(self, chunk: Chunk) -> tuple[Sink, ...]:
        """The sinks ``chunk`` was routed to when it was submitted (it expects their acks)."""
        return chunk.routed or self.router.sinks_for(chunk.origin)

    def _failure(self, error_type: str, text: str, exc: BaseException) -> None:
        """Count and log a failure of the dispatch path, and keep it for /health."""
        self.metrics.errors.labels("dispatcher", error_type).inc()
        dropped = self._repeats.admit(f"{error_type}:{type(exc).__name__}")
        if dropped is not None:
            more = f" (and {dropped} more like it in the last {self._repeats.window:g}s)" if dropped else ""
            log.error("%s%s", text, more, exc_info=exc, extra={"error_type": error_type})
        with self._count_lock:
            if error_type != "processing_error":
                self.worker_errors += 1
            self.last_failure = text
            self._last_failure_at = time.monotonic()

    def _send(self, sink: Sink, batch: list[Chunk]) -> None:
        """Hand ``batch`` to ``sink``. If it raises, hand over again what it did not take, up to
        ``max_retries`` times with a doubling delay; then park the chunk it keeps failing on (all
        it did not take, if it does not say) and go on with the rest."""
        cfg = self.config
        remaining = batch
        attempt = 0
        while remaining:
            try:
                sink.send(remaining)
                return
            except SendFailed as exc:
                # The chunks it took are its own now: only the others are handed over again.
                if exc.taken:
                    attempt = 0
                remaining = remaining[exc.taken :]
                failing = remaining[:1]
                error = str(exc)
                self._failure("sink_exception", f"sink {sink.name} raised while sending: {error}", exc.cause)
            except Exception as exc:
                # Outside the contract: which chunks it took is unknown, so all are handed again.
                failing = remaining
                error = f"{type(exc).__name__}: {exc}"
                self._failure("sink_exception", f"sink {sink.name} raised while sending: {error}", exc)
            if attempt < cfg.max_retries and not self.queue.closed:
                time.sleep(cfg.retry_base_delay * 2**attempt)
                attempt += 1
                continue
            text = f"the sink raised on {attempt + 1} attempts: {error}"
            if not sink.dead_letter(failing, "all_sinks_failed", text):
                log.error("could not park the lines either; they stay unacknowledged (re-read on restart)")
            remaining = remaining[len(failing) :]
            attempt = 0

    def check(self) -> dict[str, object]:
        """The dispatcher's /health check: unhealthy when a dispatch thread is gone, degraded for
        ``RECENT_FAILURE`` seconds after a failure (analysis, a sink that raised), else healthy."""
        alive = sum(t.is_alive() for t in self._threads)
        with self._count_lock:
            out: dict[str, object] = {
                "status": "healthy",
                "threads": len(self._threads),
                "threads_alive": alive,
                "failed_chunks": self.failed_chunks,
                "worker_errors": self.worker_errors,
            }
            last, at = self.last_failure, self._last_failure_at
        if alive < len(self._threads) and not self.queue.closed:
            out["status"] = "unhealthy"
            out["message"] = f"{len(self._threads) - alive} dispatch threads ended"
        elif last and time.monotonic() - at < RECENT_FAILURE:
            out["status"] = "degraded"
            out["message"] = last
            out["last_failure_seconds_ago"] = round(time.monotonic() - at, 1)
        elif last:
            out["last_failure"] = last
        return out

    def close(self, timeout: float) -> bool:
        """Stop accepting chunks and let workers hand over what is queued. True if they finished."""
        self.queue.close()
        # One deadline for all: a thread waiting for a source that another thread holds (both
        # held by a stalled sink) must not add its own timeout to the drain.
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)
