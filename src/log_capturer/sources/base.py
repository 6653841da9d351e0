"""The contract every source implements, and what it is given to build itself.

A source reads lines and hands them to the dispatcher as :class:`~log_capturer.record.Chunk`
objects (``Dispatcher.submit``, which blocks while the sinks hold it back: backpressure). It
never acknowledges anything itself: a chunk's acknowledgement by every sink moves its
checkpoint, and a source with positions saves only checkpointed positions.

A source is one folder under ``sources/`` with a config model beside it, registered by its
config section in :mod:`log_capturer.registry` with a :class:`SourceComponent`, which builds it
from its section and a :class:`BuildContext`. What some sources can do beyond the contract is
declared by the optional protocols below (:class:`FollowsFiles`, :class:`HasPositions`,
:class:`ServesRoutes`, :class:`FiniteInput`); the agent asks each source whether it has them.

Lifecycle, driven by the agent: ``start`` (may raise :class:`SourceStartError` with a message
naming the keys to change) -> lines flow -> ``stop(timeout)`` (stop reading; hand over what is
buffered within ``timeout``) -> the dispatcher and the sinks drain -> ``finish`` (save the
acknowledged positions, release files and sockets).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from aiohttp import web
    from pydantic import BaseModel

    from log_capturer.config.schema import Config
    from log_capturer.observability.metrics import Metrics
    from log_capturer.pipeline.dispatcher import Dispatcher
    from log_capturer.reliability.dlq import DeadLetterStore
    from log_capturer.sources.file.checkpointer import Entry
    from log_capturer.sources.file.tail import TailedFile
    from log_capturer.workers.shard import Shard

C = TypeVar("C", bound="BaseModel")


class SourceStartError(RuntimeError):
    """The source cannot start (a port is taken, say); the message names the keys to change."""


class Source(Protocol):
    #: Its name in /health (``services.sources[].name``) and in its log lines.
    name: str

    def start(self) -> None:
        """Start reading, in threads of its own. Raises :class:`SourceStartError` if it cannot."""

    def stop(self, timeout: float) -> None:
        """Stop reading, and hand over what is buffered within ``timeout`` seconds."""

    def finish(self) -> None:
        """After the drain: save the acknowledged positions, release files and sockets."""

    def health(self) -> dict[str, Any]:
        """Its entry in /health: ``status`` (healthy, degraded, unhealthy) and its figures."""

    def stats(self) -> dict[str, Any]:
        """Its block in /stats (under its component's ``stats_key``)."""


@runtime_checkable
class FollowsFiles(Protocol):
    """A source that tails files (files, containers): their lag is exported as metrics."""

    def files(self, live: bool = True) -> list[TailedFile]: ...


@runtime_checkable
class HasPositions(Protocol):
    """A source with saved positions, shown by GET /positions under ``positions_key``."""

    positions_key: str

    def positions(self) -> Mapping[str, Entry]: ...


@runtime_checkable
class ResumesFrom(Protocol):
    """A source whose positions a sink commits (:class:`~log_capturer.sinks.base.CommitsPositions`):
    it resumes from those, and keeps no positions file of its own."""

    #: Which positions it keeps (files, containers): the sink commits each kind apart.
    positions_key: str

    def resume_from(self, entries: dict[str, Entry]) -> None: ...

    def positions(self) -> dict[str, Entry]: ...


#: An aiohttp request handler.
Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


@runtime_checkable
class ServesRoutes(Protocol):
    """A source that receives on the API server (HTTP ingest): its POST routes."""

    def routes(self) -> list[tuple[str, Handler]]: ...


@runtime_checkable
class FiniteInput(Protocol):
    """A source whose input ends (standard input): the agent drains and exits after it."""

    #: Set once the input ended and every line of it was queued.
    finished: threading.Event
    #: Lines read so far.
    lines_read: int

    @property
    def unacknowledged(self) -> int:
        """Lines read and not acknowledged yet."""


@dataclass
class BuildContext:
    """What a source is built with besides its own config section."""

    config: Config
    dispatcher: Dispatcher
    metrics: Metrics
    #: (index, count) when the agent is one worker of a multi-process agent, else None.
    worker: tuple[int, int] | None = None
    #: The local dead-letter store, for records a source refuses itself (HTTP ingest), or None.
    dlq: DeadLetterStore | None = None

    def listener(self, every_worker: bool) -> bool | None:
        """For a source with a listener of its own (forward, OTLP): None when this process does not
        listen (a worker other than 0 of a multi-process agent, unless ``every_worker``), else
        whether it shares its port with the other workers (``SO_REUSEPORT``: the kernel spreads
        the clients' connections over them)."""
        if self.worker is None or self.worker[1] <= 1:
            return False
        if every_worker:
            return True
        return False if self.worker[0] == 0 else None

    def shard(self, kind: str) -> Shard | None:
        """The worker's share of the ``kind`` sources (files, containers), or None (one process)."""
        from log_capturer.workers.shard import Shard

        if self.worker is None:
            return None
        return Shard(*self.worker, self.config.positions.directory, kind)


@dataclass(frozen=True)
class SourceComponent(Generic[C]):
    """A source as the registry knows it: how it is built from its section, and its /stats block."""

    #: Builds the source from its section, or returns None when the section turns it off.
    build: Callable[[C, BuildContext], Source | None]
    #: Its block's key in /stats, and the block while it does not run.
    stats_key: str
    idle_stats: Mapping[str, Any] = field(default_factory=dict)
    #: source_type -> pipeline, for the lines of this source that name no pipeline themselves.
    pipelines: Callable[[C], Mapping[str, str]] = lambda _section: {}
    #: What would keep it from starting, found without the network (``validate`` and the start).
    problems: Callable[[C], list[str]] = lambda _section: []
