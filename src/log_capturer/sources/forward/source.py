"""The forward source: a TCP (or TLS) listener for the Fluent forward protocol, on one asyncio loop.

What a connection carries is decoded by :mod:`.protocol`; this module reads, batches and
acknowledges it.

- **Batches**: the messages that one read completes are one batch. Its records become one
  chunk per tag (and per record origin) through the HTTP ingest's :class:`Records` (the same
  ``message_key`` / ``timestamp_key`` / ``level_key`` rules); the tag is the label
  ``forward.tag_label``, the source_id ``forward://SENDER-IP`` unless ``forward.source_id`` is set.
- **Backpressure**: while a batch is decoded and handed to the dispatcher (in the loop's
  executor: ``Dispatcher.submit`` blocks while the sinks hold the sources), the connection does
  not read, so the client is slowed down by TCP flow control; at most one read and one message
  (``max_message_bytes``) are buffered per connection.
- **Acknowledgements**: a message with the ``chunk`` option is answered ``{"ack": chunk}`` once
  every record of its batch was acknowledged by the sinks (delivered, or parked in the DLQ)
  and its rejected records were parked; never before. A client whose ack does not come (the
  agent stopped, the connection broke) sends the chunk again: at-least-once.
- **Bad input**: a record that cannot be shipped is parked in the local DLQ with its reason
  (``failed_sink: forward``, ``error_type: invalid_record``), counted in
  ``forward_records_rejected_total`` and logged at most once per interval with an example; the
  others are shipped and the message acknowledged. Bytes that are not msgpack, a message over
  ``max_message_bytes`` or a failed handshake close that connection only (counted in
  ``errors_total{component="forward_source"}``), after the batches before them were handed over.
- **Crashes**: an exception while handling a batch is logged with its traceback, counted
  (``error_type="crash"``), closes that connection (its unacknowledged chunks are resent by
  the client) and leaves the source degraded in ``/health`` until a batch is handed over again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from typing import Any

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher, QueueClosed
from log_capturer.record import Chunk, Origin
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.sources.base import BuildContext, SourceComponent
from log_capturer.sources.forward import protocol
from log_capturer.sources.forward.config import ForwardConfig
from log_capturer.sources.http.source import Item, Records, Rejected, _RejectionLog, park_rejected
from log_capturer.sources.listener import Receiver, start_listener, start_tls
from log_capturer.sources.supervise import describe
from log_capturer.sources.syslog.tls import TLSSetupError, server_context

log = logging.getLogger(__name__)

NAME = "forward"
COMPONENT_NAME = "forward_source"
_TLS_PREFIX = "forward.tls"
#: Base origins kept for reuse (sender x tag); more are re-created as needed.
MAX_ORIGINS = 10_000
#: Failed handshakes (TLS, shared key) and broken streams are logged at most this often.
ERROR_LOG_INTERVAL = 10.0
#: How long a stop waits for the acknowledgements of what was handed over, before closing.
STOP_ACK_WAIT = 5.0
#: How often a blocked hand-over checks whether the agent is stopping.
_SUBMIT_SLICE = 0.25


class ForwardSource(Receiver[ForwardConfig]):
    name = COMPONENT_NAME

    def __init__(
        self,
        config: ForwardConfig,
        dispatcher: Dispatcher,
        metrics: Metrics,
        dlq: DeadLetterStore | None = None,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(config, dispatcher, metrics, dlq)
        #: The port is shared with the other workers of a multi-process agent (SO_REUSEPORT).
        self.reuse_port = reuse_port
        self.records = Records(config, NAME)
        self._key = config.shared_key.get_secret_value()
        self._loop: asyncio.AbstractEventLoop
        self._stop_requested = asyncio.Event()
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._origins: dict[tuple[str, str], Origin] = {}
        self._origins_lock = threading.Lock()
        self._rejections = _RejectionLog("forward", "messages")
        self.connections: set[_Connection] = set()
        self.stopping = threading.Event()
        self._deadline = 0.0
        self.bound: list[tuple[str, str, int]] = []
        self.received = 0
        self.rejected = 0
        self.dropped = 0
        self.acks = 0
        self._logged: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the listener. Raises SourceStartError, naming the keys to change, if the port is
        taken or the TLS files cannot be used."""
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(self._loop_error)

        def serve() -> None:
            try:
                self._loop.run_until_complete(self._serve())
            except Exception:
                log.exception("forward source shutdown failed")
            finally:
                self._loop.run_until_complete(self._loop.shutdown_default_executor())
                self._loop.close()

        def cannot_listen(exc: OSError) -> str:
            return (
                f"cannot listen for the forward protocol on {self.config.host}:{self.config.port}: "
                f"{exc.strerror or exc}; change forward.port (or forward.host)"
            )

        self._thread = start_listener("forward", self._loop, self._bind, serve, cannot_listen)
        log.info("forward listening", extra={"listeners": self.listeners()})

    async def _bind(self) -> None:
        cfg = self.config
        tls = server_context(cfg.tls, _TLS_PREFIX) if cfg.tls.enabled else None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self, tls),
            cfg.host,
            cfg.port,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
        )
        for s in self._server.sockets:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            self.bound.append(("tcp" if tls is None else "tls", *s.getsockname()[:2]))

    def listeners(self) -> list[str]:
        return [f"{t}://{h}:{p}" for t, h, p in self.bound]

    async def _serve(self) -> None:
        """Serve until :meth:`stop` asks; then stop reading, wait a little for the
        acknowledgements of what was handed over, and close."""
        await self._stop_requested.wait()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.pause()
        wait_until = min(self._deadline, time.monotonic() + STOP_ACK_WAIT)
        while time.monotonic() < wait_until and any(c.busy or c.awaiting for c in self.connections):
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not isinstance(exc, Exception):
            loop.default_exception_handler(context)
            return
        self.supervisor.crashed(exc, f"{context.get('message', 'in a callback')}; the listener goes on")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening; hand over what is being read; wait (at most ``timeout``) for the
        acknowledgements of what was handed over, so their clients get them."""
        if self._thread is None or not self._thread.is_alive():
            return
        self._deadline = time.monotonic() + timeout
        self.stopping.set()
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._stop_requested.set)
        self._thread.join(timeout + 10)

    def finish(self) -> None:
        """Nothing to save: the clients keep what was not acknowledged."""

    def health(self) -> dict[str, Any]:
        return {
            **self.supervisor.health(),
            "listeners": self.listeners(),
            "connections": len(self.connections),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "rejected": self.rejected,
            "dropped": self.dropped,
            "acks": self.acks,
            "connections": len(self.connections),
        }

    # -- errors --------------------------------------------------------------------------------
    def error(self, error_type: str, peer: str, text: str) -> None:
        """A connection failed (``error_type``): counted, logged at most once per interval per type."""
        self.metrics.errors.labels(COMPONENT_NAME, error_type).inc()
        now = time.monotonic()
        if now - self._logged.get(error_type, float("-inf")) < ERROR_LOG_INTERVAL:
            self._unlogged[error_type] += 1
            return
        more = self._unlogged.pop(error_type, 0)
        self._logged[error_type] = now
        since = f" ({more} more since the last report)" if more else ""
        log.warning("forward: connection from %s closed: %s%s", peer, text, since)

    # -- batches (executor threads) ------------------------------------------------------------
    def base_origin(self, peer: str, tag: str) -> Origin:
        """The origin of a sender's records of one tag (records may name their own on top)."""
        key = (peer, tag)
        origin = self._origins.get(key)
        if origin is None:
            cfg = self.config
            labels = dict(cfg.labels)
            if cfg.tag_label and tag:
                labels[cfg.tag_label] = tag
            origin = Origin(cfg.source_type, cfg.source_id or f"forward://{peer}", labels, cfg.pipeline)
            with self._origins_lock:
                if len(self._origins) >= MAX_ORIGINS:
                    self._origins.clear()
                self._origins[key] = origin
        return origin

    def columns(self, peer: str, raw: bytes) -> protocol.Message | None:
        """The message whose bytes are ``raw``, its chunks made straight from them (one C pass, no
        dict per record: see ``Records.forward_chunks``); None when it must be decoded."""
        got = self.records.forward_chunks(raw, lambda tag: self.base_origin(peer, tag))
        if got is None:
            return None
        tag, chunk_id, chunks = got
        return protocol.Message(tag, chunk=chunk_id, mode="Forward", chunks=chunks)

    def hand_over(self, peer: str, transport: str, messages: list[protocol.Message]) -> list[Chunk] | None:
        """Make chunks of a batch's records, queue them, park its rejected records. Returns the
        queued chunks, or None when the agent stopped before they could all be queued (then the
        batch must not be acknowledged). The records stay in order: consecutive decoded messages
        are grouped by tag (one chunk for many small messages), a message whose chunks are made
        already ends the group before it."""
        by_tag: dict[str, list[Item]] = {}
        rejected: list[Rejected] = []
        chunks: list[Chunk] = []

        def flush() -> None:
            for tag, items in by_tag.items():
                made, bad = self.records.chunks(items, self.base_origin(peer, tag))
                chunks.extend(made)
                rejected.extend(bad)
            by_tag.clear()

        for message in messages:
            if message.chunks is not None:
                flush()
                chunks.extend(message.chunks)
            else:  # an empty tag too (its records have no tag label); a message that is not
                # one has only its rejected item
                by_tag.setdefault(message.tag, []).extend(message.items)
        flush()
        total = sum(len(c.lines) for c in chunks)
        self.received += total + len(rejected)
        self.metrics.source_lines_received.labels(NAME, transport).inc(total + len(rejected))
        queued = self._submit(chunks)
        if queued < len(chunks):
            self._dropped(total - sum(len(c.lines) for c in chunks[:queued]))
            return None
        if rejected:
            self._reject(rejected)
        self.supervisor.ok()
        return chunks

    def _submit(self, chunks: list[Chunk]) -> int:
        """Queue a batch's chunks, handed to the dispatcher together (one wake-up, not one per
        chunk); waits while the dispatcher holds the sources. Returns how many were queued (all
        of them, unless the agent stopped first)."""
        queued = 0
        try:
            while queued < len(chunks):
                queued += self.dispatcher.submit_many(chunks[queued:], timeout=_SUBMIT_SLICE)
                if queued < len(chunks) and self.stopping.is_set() and time.monotonic() > self._deadline:
                    break
        except QueueClosed:
            pass
        return queued

    def _dropped(self, n: int) -> None:
        """Records not queued before the agent stopped: their chunks are not acknowledged, so a
        client that asked for acks sends them again (one that did not, loses them: counted)."""
        self.dropped += n
        self.metrics.source_lines_dropped.labels(NAME, "shutdown").inc(n)
        log.warning("forward: %d records could not be queued before the agent stopped (not acknowledged)", n)

    def _reject(self, rejected: list[Rejected]) -> None:
        """Park rejected records in the local DLQ (empty messages skipped with ``empty_messages:
        skip``), count them and log them (at most once per interval). A durable write."""
        skip = self.config.empty_messages == "skip"
        counter = self.metrics.forward_records_rejected
        outcomes, dlq_error = park_rejected(rejected, self.dlq, skip, counter, NAME)
        self.rejected += len(rejected)
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._rejections.add, self._loop, outcomes, dlq_error)

    def acked(self, n: int) -> None:
        self.acks += n
        self.metrics.forward_acks.inc(n)


class _Connection(asyncio.Protocol):
    """One client connection. Reads are paused while a batch is being handed over."""

    def __init__(self, source: ForwardSource, tls: ssl.SSLContext | None) -> None:
        self.source = source
        self.tls = tls
        self.kind = "tcp" if tls is None else "tls"
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.decoder = protocol.unpacker(source.config.max_message_bytes)
        self.inbox: list[bytes] = []
        #: A batch is being handed over (in the executor): reading is paused.
        self.busy = False
        #: Batches handed over whose acknowledgements are still to be sent.
        self.awaiting = 0
        self.nonce = b""
        self.authenticated = not source._key
        self.closed = False
        self.eof = False
        self._paused = False
        self._handshake: asyncio.Task[None] | None = None

    # -- connection ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        src = self.source
        if len(src.connections) >= src.config.max_connections or src.stopping.is_set():
            src.metrics.errors.labels(COMPONENT_NAME, "too_many_connections").inc()
            log.warning("forward: refusing a connection (forward.max_connections reached)")
            self.closed = True
            transport.abort()
            return
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "unknown"
        src.connections.add(self)
        src.metrics.source_connections.labels(NAME).set(len(src.connections))
        if self.tls is not None:
            self._handshake = asyncio.get_running_loop().create_task(self._start_tls(transport, self.tls))
        else:
            self._greet()

    def _greet(self) -> None:
        if not self.authenticated and self.transport is not None:
            self.nonce = protocol.new_nonce()
            self.transport.write(protocol.helo(self.nonce))

    async def _start_tls(self, transport: asyncio.Transport, ctx: ssl.SSLContext) -> None:
        upgraded = await start_tls(self, transport, ctx, self._tls_failed)
        if upgraded is not None:
            self.transport = upgraded
            self._greet()

    def _tls_failed(self, exc: OSError | TimeoutError) -> None:
        if not self.source.stopping.is_set():
            self.source.error("tls_handshake", self.peer, f"TLS handshake failed: {describe(exc)}")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.inbox.append(data)
        if not self.busy:
            self.busy = True
            self.pause()
            asyncio.get_running_loop().create_task(self._process())

    def eof_received(self) -> bool | None:
        self.eof = True
        if not self.busy and not self.awaiting:
            return None  # the transport closes itself
        return True  # keep it open to write the acknowledgements; closed after them

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        src = self.source
        if self in src.connections:
            src.connections.discard(self)
            src.metrics.source_connections.labels(NAME).set(len(src.connections))

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            if not self.source.stopping.is_set():
                self.transport.resume_reading()

    def close(self) -> None:
        if self._handshake is not None and not self._handshake.done():
            self._handshake.cancel()
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def _fail(self, error_type: str, text: str) -> None:
        self.source.error(error_type, self.peer, text)
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- batches -------------------------------------------------------------------------------
    async def _process(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.inbox and not self.closed:
                data, self.inbox = self.inbox, []
                try:
                    chunks, ack_ids, answer, failure = await loop.run_in_executor(None, self._work, data)
                except Exception as exc:
                    self.source.supervisor.crashed(exc, "the connection was closed; its client resends")
                    self.close()
                    return
                if answer:
                    self._write(answer)
                if chunks is not None and ack_ids:
                    self._await_acks(loop, chunks, ack_ids)
                if failure is not None:
                    self._fail(*failure)
                    return
        finally:
            self.busy = False
            self._resume()
            if self.eof and not self.awaiting and self.transport is not None:
                self.transport.close()

    def _work(self, data: list[bytes]) -> tuple[list[Chunk] | None, list[Any], bytes, tuple[str, str] | None]:
        """In the executor: decode what ``data`` completes, hand the batch over. Returns the
        queued chunks, the chunk ids to acknowledge, bytes to answer at once (PONG), and the
        failure that closes the connection (type, text) if any."""
        src = self.source
        spans: list[bytes] = []
        failure: tuple[str, str] | None = None
        for part in data:
            try:
                spans.extend(self.decoder.spans(part))
            except protocol.ProtocolError as exc:
                kind = "message_too_large" if "max_message_bytes" in str(exc) else "invalid_stream"
                failure = (kind, str(exc))
                break
        answer = b""
        if not self.authenticated and spans:
            try:
                ping = protocol.values_of(spans[0])[0][0]
            except protocol.ProtocolError as exc:
                return None, [], answer, ("invalid_stream", str(exc))
            answer, why = protocol.pong(ping, self.nonce, src._key, src.config.self_hostname)
            if why:
                return None, [], answer, ("auth_failed", f"authentication failed: {why}")
            self.authenticated = True
            spans = spans[1:]
        if not spans:
            return [], [], answer, failure
        limit = src.config.max_message_bytes
        messages: list[protocol.Message] = []
        for raw in spans:
            message = src.columns(self.peer, raw)
            if message is not None:
                messages.append(message)
                continue
            try:
                values, plain = protocol.values_of(raw)
            except protocol.ProtocolError as exc:
                failure = ("invalid_stream", str(exc))
                break
            for value in values:
                # CompressedPackedForward: inflated, then read in one pass as the others
                packed = protocol.inflated(value, limit)
                message = src.columns(self.peer, packed) if packed is not None else None
                messages.append(message or protocol.decode(value, len(messages) + 1, limit, plain))
        chunks = src.hand_over(self.peer, self.kind, messages)
        ack_ids = [m.chunk for m in messages if m.chunk is not None]
        return chunks, ack_ids, answer, failure

    def _await_acks(self, loop: asyncio.AbstractEventLoop, chunks: list[Chunk], ack_ids: list[Any]) -> None:
        """Send ``{"ack": id}`` for each of ``ack_ids`` once every chunk is acknowledged."""
        self.awaiting += 1
        left = [len(chunks)]
        lock = threading.Lock()

        def finished() -> None:  # on the loop
            self.awaiting -= 1
            if not self.closed:
                self.source.acked(len(ack_ids))
                for chunk_id in ack_ids:
                    self._write(protocol.ack(chunk_id))
            if self.eof and not self.awaiting and not self.busy and self.transport is not None:
                self.transport.close()

        if not chunks:
            finished()
            return

        def done(_: Chunk) -> None:  # on a sink thread: the loop is woken once, by the last one
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                with contextlib.suppress(RuntimeError):  # the loop is closed: the agent stopped
                    loop.call_soon_threadsafe(finished)

        for chunk in chunks:
            chunk.on_done(done)


def build(config: ForwardConfig, ctx: BuildContext) -> ForwardSource | None:
    """Off unless enabled; in a multi-process agent every worker listens on the port (or only
    worker 0 with ``every_worker: false``)."""
    reuse_port = ctx.listener(config.every_worker)
    if not config.enabled or reuse_port is None:
        return None
    return ForwardSource(config, ctx.dispatcher, ctx.metrics, ctx.dlq, reuse_port)


def problems(config: ForwardConfig) -> list[str]:
    """Why the listener could not start, for ``log-capturer validate`` ([] if it can)."""
    if not (config.enabled and config.tls.enabled):
        return []
    try:
        server_context(config.tls, _TLS_PREFIX)
    except TLSSetupError as exc:
        return [str(exc)]
    return []


COMPONENT = SourceComponent(
    build=build,
    stats_key=NAME,
    idle_stats={"received": 0, "rejected": 0, "dropped": 0, "acks": 0, "connections": 0},
    problems=problems,
)
