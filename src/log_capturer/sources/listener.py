"""What the network sources share: the listener thread, reading a bounded request body, chunks
built from per-origin groups.

Used by ``forward`` and ``syslog`` (their listener threads), and ``http_ingest`` and ``otlp`` (the
request bodies and the chunks of a decoded body).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.record import Chunk, EncodedFields, Origin
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.sources.base import SourceStartError
from log_capturer.sources.supervise import Supervisor
from log_capturer.sources.syslog.tls import TLSSetupError

ConfigT = TypeVar("ConfigT")

#: How much of a request body is read at a time.
_READ = 1 << 16
#: How long a client has to complete a TLS handshake.
TLS_HANDSHAKE_TIMEOUT = 30.0
#: How long a start waits for the listener to be bound.
_BIND_WAIT = 30.0


class Receiver(Generic[ConfigT]):
    """A source that receives records from clients (``http_ingest``, ``otlp``, ``forward``): its
    section, the dispatcher it hands chunks to, its metrics, the local DLQ of rejected records (None
    when it is disabled) and the supervisor that reports it (named :attr:`name`)."""

    name: str

    def __init__(
        self,
        config: ConfigT,
        dispatcher: Dispatcher,
        metrics: Metrics,
        dlq: DeadLetterStore | None = None,
    ) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.dlq = dlq
        self.supervisor = Supervisor(self.name, metrics)


def start_listener(
    name: str,
    loop: asyncio.AbstractEventLoop,
    bind: Callable[[], Coroutine[Any, Any, None]],
    serve: Callable[[], None],
    cannot_listen: Callable[[OSError], str],
    bound: Callable[[], None] | None = None,
) -> threading.Thread:
    """Start the daemon thread ``name`` that runs ``loop``: ``bind()`` first, then ``bound()`` (if
    given) and ``serve()``, which runs until the source stops and closes ``loop``.

    Returns the thread once ``bind()`` is done (or after 30 s). When it failed, ``loop`` is closed,
    the thread joined and the error raised: a :class:`TLSSetupError` or an ``OSError`` (the text of
    ``cannot_listen(exc)``) as :class:`SourceStartError`, anything else as it is."""
    ready = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(bind())
        except BaseException as exc:
            errors.append(exc)
            loop.close()
            ready.set()
            return
        if bound is not None:
            bound()
        ready.set()
        serve()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    ready.wait(_BIND_WAIT)
    if errors:
        thread.join(5)
        exc = errors[0]
        if isinstance(exc, TLSSetupError):
            raise SourceStartError(str(exc)) from exc
        if isinstance(exc, OSError):
            raise SourceStartError(cannot_listen(exc)) from exc
        raise exc
    return thread


async def start_tls(
    protocol: asyncio.Protocol,
    transport: asyncio.Transport,
    ctx: ssl.SSLContext,
    failed: Callable[[OSError | TimeoutError], None],
) -> asyncio.Transport | None:
    """The server side of a TLS handshake on ``transport`` (a connection of ``protocol``): the TLS
    transport, or None when the handshake failed (the connection is aborted, ``protocol`` told it
    is lost, then ``failed(exc)`` called) or the connection closed during it."""
    loop = asyncio.get_running_loop()
    try:
        upgraded = await loop.start_tls(
            transport, protocol, ctx, server_side=True, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT
        )
    except (OSError, TimeoutError) as exc:
        transport.abort()
        protocol.connection_lost(None)
        failed(exc)
        return None
    if upgraded is None:  # the connection closed during the handshake
        protocol.connection_lost(None)
        return None
    return upgraded


async def read_body(
    request: web.Request,
    limit: int,
    too_large: Exception,
    unreadable: Callable[[str], Exception],
) -> bytes:
    """The body of ``request``, decompressed as its Content-Encoding says.

    Raises ``too_large`` when the body is (or its Content-Length says it is) larger than ``limit``
    bytes, and ``unreadable(why)`` when it cannot be decompressed or its chunked encoding is
    broken; ``why`` names the Content-Encoding (if any) and aiohttp's reason."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    parts: list[bytes] = []
    size = 0
    try:
        async for part in request.content.iter_chunked(_READ):
            size += len(part)
            if size > limit:
                raise too_large
            parts.append(part)
    except web.RequestPayloadError as exc:
        # A body aiohttp cannot decompress (or a broken chunked encoding). Marked as read, so
        # that aiohttp does not try to read the rest after the answer (and log a traceback).
        request.content.feed_eof()
        encoding = request.headers.get("Content-Encoding", "")
        how = f" (Content-Encoding: {encoding})" if encoding else ""
        raise unreadable(f"the body cannot be read{how}: {str(exc).splitlines()[-1].strip()}") from None
    return b"".join(parts)


def all_acked_future(loop: asyncio.AbstractEventLoop, chunks: Sequence[Chunk]) -> asyncio.Future[None]:
    """A future of ``loop`` that is done once every one of ``chunks`` is (delivered, or parked in
    the DLQ): the loop is woken once, by the last, instead of once per chunk."""
    fut: asyncio.Future[None] = loop.create_future()
    left = [len(chunks)]
    lock = threading.Lock()

    def resolve() -> None:
        if not fut.done():
            fut.set_result(None)

    def done(_: Chunk) -> None:
        # Runs on a sink thread; the loop may already be closed when the agent stops.
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(resolve)

    if not chunks:
        resolve()
    for chunk in chunks:
        chunk.on_done(done)
    return fut


@dataclass
class Group:
    """The records of a decoded body that share one origin, as columns of one chunk."""

    origin: Origin
    lines: list[str] = field(default_factory=list)
    #: Each record's fields: a dict, or (with ``members``) the JSON object a sink writes (bytes),
    #: or None.
    fields: list[Any] = field(default_factory=list)
    levels: list[str | None] = field(default_factory=list)
    stamps: list[int | None] = field(default_factory=list)
    #: Set when ``fields`` may hold JSON objects: every top-level member they may have (the
    #: chunk's ``meta_columns`` then holds them, see :class:`~log_capturer.record.EncodedFields`).
    members: frozenset[str] | None = None


def chunks_of(groups: Iterable[Group]) -> list[Chunk]:
    """One chunk a group, read now: with its fields, levels and timestamps where any record has
    one (a record without a timestamp gets the read time)."""
    now = time.time_ns()
    out = []
    for g in groups:
        chunk = Chunk(g.origin, g.lines, read_time_ns=now)
        if g.members is not None:
            if any(f is not None for f in g.fields):
                chunk.meta_columns = EncodedFields(g.fields, g.members)
        elif any(f is not None for f in g.fields):
            chunk.meta = g.fields
        if any(lvl is not None for lvl in g.levels):
            chunk.preset_levels = g.levels
        if any(s is not None for s in g.stamps):
            chunk.timestamps = [now if s is None else s for s in g.stamps]
        out.append(chunk)
    return out
