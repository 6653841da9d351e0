"""The syslog source: UDP and TCP listeners on one asyncio loop, batching messages into chunks.

Messages are buffered per sender (transport + peer address) and handed to
the dispatcher as one chunk per sender when ``batch_lines`` are waiting or
``batch_wait`` has passed since the first one: many messages per chunk under
load, a few milliseconds of latency when idle. Parsing happens at hand-over,
a whole buffer at a time.

Backpressure: handing a chunk over blocks the loop while the dispatcher queue
is full, so TCP senders are slowed down by TCP flow control. UDP has none: the
kernel drops datagrams its receive buffer cannot hold (see
``udp.receive_buffer_bytes``); those drops are read from ``/proc/net/udp``
every second and counted. On stop, what is buffered is handed over within
the drain deadline; anything that cannot be is counted in
``source_lines_dropped_total``.

Crashes: an exception in a handler (a protocol callback, a hand-over) is
caught by the loop, which goes on; it is logged with its traceback, counted
in ``errors_total{component="syslog_source",error_type="crash"}`` (the
messages of a batch that could not be made into a chunk in
``source_lines_dropped_total{reason="crash"}``), and the source is degraded in
``/health`` until a batch is handed over again. When the loop itself fails,
its :class:`Supervisor` runs it again after a back-off; the listeners stay
bound meanwhile (the kernel buffers what arrives).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import threading
import time
from typing import Any

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher, QueueClosed
from log_capturer.record import Chunk, Origin
from log_capturer.sources.base import BuildContext, SourceComponent
from log_capturer.sources.listener import start_listener, start_tls
from log_capturer.sources.supervise import Supervisor, describe
from log_capturer.sources.syslog.config import SyslogConfig
from log_capturer.sources.syslog.framing import Framer
from log_capturer.sources.syslog.parse import parse
from log_capturer.sources.syslog.tls import server_context, tls_problems

log = logging.getLogger(__name__)

#: Senders whose Origin is kept for reuse (more are re-created as needed).
MAX_ORIGINS = 10_000
#: How often the kernel's count of dropped datagrams is read.
UDP_DROPS_INTERVAL = 1.0
#: Failed TLS handshakes are logged at most this often (seconds); all are counted.
TLS_LOG_INTERVAL = 10.0
#: How long a TLS client has to finish its handshake.


def udp_drops(inode: int) -> int | None:
    """Datagrams the kernel dropped on the UDP socket with this inode (Linux), None if unknown."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if len(cols) >= 13 and cols[9] == str(inode):
                        return int(cols[12])
        except (OSError, StopIteration, ValueError):
            continue
    return None


class _Pending:
    """Messages of one sender waiting to be handed over."""

    __slots__ = ("first_ns", "frames", "truncated")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.truncated: list[int] = []
        self.first_ns = time.time_ns()


class SyslogSource:
    name = "syslog_source"

    def __init__(self, config: SyslogConfig, dispatcher: Dispatcher, metrics: Metrics) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.supervisor = Supervisor("syslog_source", metrics)
        #: The listeners' event loop, made by :meth:`start` and closed when its thread ends (an
        #: agent that fails to start leaves none to the garbage collector, which printed a traceback).
        self._loop: asyncio.AbstractEventLoop
        #: Set on the loop by :meth:`stop`: the serving task then closes the listeners and hands over.
        self._stop_requested = asyncio.Event()
        self._serving: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._origins: dict[tuple[str, str], Origin] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_inode = 0
        self._udp_drops = 0
        self.connections: set[_TcpProtocol] = set()
        self.stopping = threading.Event()
        self._deadline = 0.0
        #: (transport, host, port) actually bound, for logs and tests.
        self.bound: list[tuple[str, str, int]] = []
        self.messages_received = 0
        self.messages_dropped = 0
        self._tls_failures = 0
        self._tls_logged = float("-inf")

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the listeners and start serving. Raises SourceStartError, naming the keys to
        change, if a port is taken or the TLS files cannot be used."""
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(self._loop_error)

        def bound() -> None:
            self._serving = self._loop.create_task(self._serve())

        def serve() -> None:
            serving = self._serving
            assert serving is not None
            try:
                self.supervisor.run(self._run_loop, self.stopping, self._restarting)
                if not serving.done():  # stopped while waiting to restart: hand over what is buffered
                    self._run_loop()
            except Exception:
                log.exception("syslog source shutdown failed")
            finally:
                self._loop.close()

        def cannot_listen(exc: OSError) -> str:
            return (
                f"cannot listen for syslog: {exc.strerror or exc}; change syslog.udp.port / "
                "syslog.tcp.port (or the host)"
            )

        self._thread = start_listener("syslog", self._loop, self._bind, serve, cannot_listen, bound)
        log.info("syslog listening", extra={"listeners": [f"{t}://{h}:{p}" for t, h, p in self.bound]})

    async def _bind(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        # Before anything is bound: unusable TLS files fail the start with nothing to close.
        tls = server_context(cfg.tcp.tls) if cfg.tcp.enabled and cfg.tcp.tls.enabled else None
        try:
            if cfg.udp.enabled:
                sock = socket.socket(_family(cfg.udp.host), socket.SOCK_DGRAM)
                if cfg.udp.receive_buffer_bytes:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cfg.udp.receive_buffer_bytes)
                sock.bind((cfg.udp.host, cfg.udp.port))
                transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=sock)
                self._udp = transport
                self.bound.append(("udp", *sock.getsockname()[:2]))
                self._udp_inode = os.fstat(sock.fileno()).st_ino
                self._udp_drops = udp_drops(self._udp_inode) or 0
                loop.call_later(UDP_DROPS_INTERVAL, self._check_udp_drops)
                log.info(
                    "syslog UDP receive buffer",
                    extra={"bytes": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)},
                )
            if cfg.tcp.enabled:
                server = await loop.create_server(
                    lambda: _TcpProtocol(self, tls), cfg.tcp.host, cfg.tcp.port, reuse_address=True
                )
                self._servers.append(server)
                for s in server.sockets:
                    self.bound.append(("tcp" if tls is None else "tls", *s.getsockname()[:2]))
        except OSError:
            await self._close_listeners()
            raise

    def tls_failed(self, peer: str, exc: BaseException) -> None:
        """A TLS handshake failed (a plain-TCP client, no or an untrusted client certificate...):
        counted, and logged at most once per ``TLS_LOG_INTERVAL`` (with how many since)."""
        self.metrics.errors.labels("syslog_source", "tls_handshake").inc()
        self._tls_failures += 1
        now = time.monotonic()
        if now - self._tls_logged < TLS_LOG_INTERVAL:
            return
        more = f" ({self._tls_failures - 1} more since the last report)" if self._tls_failures > 1 else ""
        self._tls_logged, self._tls_failures = now, 0
        log.warning("syslog: TLS handshake with %s failed: %s%s", peer, describe(exc), more)

    def _check_udp_drops(self) -> None:
        if self.stopping.is_set():
            return
        try:
            self._count_udp_drops()
        finally:  # a failed check (reported by the loop's handler) must not end the checks
            self._loop.call_later(UDP_DROPS_INTERVAL, self._check_udp_drops)

    def _count_udp_drops(self) -> None:
        drops = udp_drops(self._udp_inode)
        if drops is not None and drops > self._udp_drops:
            n = drops - self._udp_drops
            self._udp_drops = drops
            self.messages_dropped += n
            self.metrics.source_lines_dropped.labels("syslog", "udp_receive_buffer_full").inc(n)
            log.warning(
                "syslog: the kernel dropped %d UDP datagrams (receive buffer full); raise "
                "syslog.udp.receive_buffer_bytes and net.core.rmem_max, or send over TCP",
                n,
            )

    async def _close_listeners(self) -> None:
        if self._udp is not None:
            self._udp.close()
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.close()
        for server in self._servers:
            await server.wait_closed()

    def _run_loop(self) -> None:
        assert self._serving is not None
        self._loop.run_until_complete(self._serving)

    def _restarting(self) -> None:
        """Before the loop runs again: healthy once it turns."""
        self._loop.call_soon(self.supervisor.ok)

    async def _serve(self) -> None:
        """Serve until :meth:`stop` asks, then close the listeners and hand over what is buffered."""
        await self._stop_requested.wait()
        await self._close_listeners()
        self._flush_all()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """A callback on the loop failed (a handler crashed): the loop goes on; say so."""
        exc = context.get("exception")
        if not isinstance(exc, Exception):
            loop.default_exception_handler(context)
            return
        self.supervisor.crashed(exc, f"{context.get('message', 'in a callback')}; the listeners go on")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening and hand over what is buffered, within ``timeout`` seconds."""
        if self._thread is None or not self._thread.is_alive():
            return
        self._deadline = time.monotonic() + timeout
        self.stopping.set()
        with contextlib.suppress(RuntimeError):  # the loop thread ended on its own (closed loop)
            self._loop.call_soon_threadsafe(self._stop_requested.set)
        self._thread.join(timeout + 10)

    def health(self) -> dict[str, Any]:
        """The source's state for ``/health`` (see :meth:`Supervisor.health`), its listeners."""
        return {
            **self.supervisor.health(),
            "listeners": [f"{t}://{h}:{p}" for t, h, p in self.bound],
            "tcp_connections": len(self.connections),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "received": self.messages_received,
            "dropped": self.messages_dropped,
            "tcp_connections": len(self.connections),
        }

    def finish(self) -> None:
        """Nothing to save: syslog has no positions (its senders keep nothing either)."""

    # -- receiving (loop thread) ---------------------------------------------------------------
    def received(self, transport: str, peer: str, frame: bytes, truncated: bool) -> None:
        key = (transport, peer)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
        if truncated:
            pending.truncated.append(len(pending.frames))
        pending.frames.append(frame)
        if len(pending.frames) >= self.config.batch_lines:
            self._flush(key)
        elif self._flush_handle is None:
            self._flush_handle = self._loop.call_later(self.config.batch_wait, self._flush_all)

    def _flush_all(self) -> None:
        self._flush_handle = None
        for key in list(self._pending):
            self._flush(key)

    def _flush(self, key: tuple[str, str]) -> None:
        pending = self._pending.pop(key, None)
        if pending is None or not pending.frames:
            return
        transport, peer = key
        try:
            chunk = self._chunk(transport, peer, pending)
        except Exception:
            self.messages_dropped += len(pending.frames)
            self.metrics.source_lines_dropped.labels("syslog", "crash").inc(len(pending.frames))
            raise
        n = len(chunk.lines)
        m = self.metrics
        m.source_lines_received.labels("syslog", transport).inc(n)
        if chunk.truncated:
            m.lines_truncated.labels("syslog").inc(len(chunk.truncated))
        self.messages_received += n
        try:
            while not self.dispatcher.submit(chunk, None, timeout=0.25):
                if self.stopping.is_set() and time.monotonic() > self._deadline:
                    self._dropped(n, "shutdown_queue_full")
                    return
        except QueueClosed:
            self._dropped(n, "shutdown")
            return
        self.supervisor.ok()

    def _dropped(self, n: int, reason: str) -> None:
        self.messages_dropped += n
        self.metrics.source_lines_dropped.labels("syslog", reason).inc(n)
        log.warning("syslog: %d messages could not be queued before the agent stopped", n)

    def _origin(self, transport: str, peer: str) -> Origin:
        key = (transport, peer)
        origin = self._origins.get(key)
        if origin is None:
            if len(self._origins) >= MAX_ORIGINS:
                self._origins.clear()
            origin = self._origins[key] = Origin(
                "syslog", f"{transport}://{peer}", dict(self.config.labels), pipeline=self.config.pipeline
            )
        return origin

    def _chunk(self, transport: str, peer: str, pending: _Pending) -> Chunk:
        lines: list[str] = []
        meta: list[dict[str, Any] | None] = []
        stamps: list[int] = []
        levels: list[str | None] = []
        errors: dict[str, int] = {}
        read_ns = pending.first_ns
        for frame in pending.frames:
            text = frame.decode("utf-8", "backslashreplace")
            p = parse(text.rstrip("\r\n\x00"))
            if p.error:
                errors[p.error] = errors.get(p.error, 0) + 1
            fields = p.fields
            fields["source_ip"] = peer
            lines.append(p.message)
            meta.append(fields)
            stamps.append(read_ns if p.ts is None else p.ts)
            levels.append(p.level)
        for reason, n in errors.items():
            self.metrics.source_parse_errors.labels("syslog", reason).inc(n)
        chunk = Chunk(self._origin(transport, peer), lines, read_time_ns=read_ns, meta=meta)
        chunk.timestamps = stamps
        chunk.preset_levels = levels
        if pending.truncated:
            chunk.truncated = frozenset(pending.truncated)
        return chunk


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, source: SyslogSource) -> None:
        self.source = source
        self.limit = source.config.max_message_bytes

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        data = data.rstrip(b"\r\n\x00")
        if not data:
            return
        truncated = len(data) > self.limit
        self.source.received("udp", str(addr[0]), data[: self.limit] if truncated else data, truncated)

    def error_received(self, exc: Exception) -> None:
        self.source.metrics.errors.labels("syslog_source", "udp_error").inc()
        log.warning("syslog UDP socket error: %s", exc)


class _TcpProtocol(asyncio.Protocol):
    """One TCP connection; with ``tls``, its TLS handshake is done here (``loop.start_tls``) rather
    than by the server, so that a failed one can be counted and logged."""

    def __init__(self, source: SyslogSource, tls: ssl.SSLContext | None = None) -> None:
        self.source = source
        self.tls = tls
        self.kind = "tcp" if tls is None else "tls"
        self.framer = Framer(source.config.max_message_bytes)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._handshake: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        src = self.source
        if len(src.connections) >= src.config.tcp.max_connections or src.stopping.is_set():
            src.metrics.errors.labels("syslog_source", "too_many_connections").inc()
            log.warning("syslog: refusing a TCP connection (tcp.max_connections reached)")
            transport.abort()
            return
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "unknown"
        src.connections.add(self)
        src.metrics.source_connections.labels("syslog").set(len(src.connections))
        if self.tls is not None:
            self._handshake = asyncio.get_running_loop().create_task(self._start_tls(transport, self.tls))

    async def _start_tls(self, transport: asyncio.Transport, ctx: ssl.SSLContext) -> None:
        upgraded = await start_tls(self, transport, ctx, self._tls_failed)
        if upgraded is not None:
            self.transport = upgraded

    def _tls_failed(self, exc: OSError | TimeoutError) -> None:
        if not self.source.stopping.is_set():
            self.source.tls_failed(self.peer, exc)

    def data_received(self, data: bytes) -> None:
        for frame, truncated in self.framer.feed(data):
            self.source.received(self.kind, self.peer, frame, truncated)

    def eof_received(self) -> bool | None:
        last = self.framer.finish()
        if last is not None:
            frame, truncated = last
            self.source.received(self.kind, self.peer, frame, truncated)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        src = self.source
        if self in src.connections:
            src.connections.discard(self)
            src.metrics.source_connections.labels("syslog").set(len(src.connections))

    def close(self) -> None:
        if self._handshake is not None and not self._handshake.done():
            self._handshake.cancel()
        if self.transport is not None:
            self.transport.close()


def build(config: SyslogConfig, ctx: BuildContext) -> SyslogSource | None:
    return SyslogSource(config, ctx.dispatcher, ctx.metrics) if config.enabled else None


COMPONENT = SourceComponent(
    build=build,
    stats_key="syslog",
    idle_stats={"received": 0, "dropped": 0, "tcp_connections": 0},
    problems=tls_problems,
)
