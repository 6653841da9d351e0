"""The contract every sink implements, and how the registry builds one.

A sink receives batches of chunks whose lines are already analysed (levels,
keys). ``send`` may block (that is backpressure) but never raises for a
delivery problem: the sink owns retries and the dead-letter path, and
acknowledges every line exactly once through :meth:`Chunk.ack` when it was
delivered or durably parked. A bug that keeps it from taking a chunk is raised
as :class:`SendFailed`, which tells the dispatcher which chunks it did take.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from log_capturer.record import Chunk

if TYPE_CHECKING:
    from pydantic import BaseModel

    from log_capturer.config.schema import Config
    from log_capturer.observability.metrics import Metrics
    from log_capturer.reliability.dlq import DeadLetterStore
    from log_capturer.reliability.dlq.replay import ReplayRecord

C = TypeVar("C", bound="BaseModel")

Status = Literal["healthy", "degraded", "unhealthy"]


def utc_now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class SinkHealth:
    name: str
    status: Status
    message: str
    last_check: str = field(default_factory=utc_now_iso)
    details: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "last_check": self.last_check,
        }
        out.update(self.details)
        return out


class SendFailed(Exception):
    """:meth:`Sink.send` could not take every chunk (a bug, never a delivery problem):
    ``chunks[:taken]`` are the sink's and are acknowledged as usual, ``chunks[taken:]`` were not
    touched, so the dispatcher hands over only those again. ``cause``: the exception."""

    def __init__(self, taken: int, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.taken = taken
        self.cause = cause


class Sink(Protocol):
    name: str
    sink_type: str
    #: Once ``send`` returned, it never reads the lines of the chunks it took again (it holds
    #: their records encoded): the dispatcher then drops the lines' text of a chunk every sink
    #: it went to says this of (``Chunk.release_text``). False when absent.
    releases_text: bool

    def start(self) -> None:
        """Connect and start background work. Must not block on the network for long."""

    def send(self, chunks: list[Chunk]) -> None:
        """Take responsibility for every line of ``chunks``; acknowledge each line later. Raises
        nothing but :class:`SendFailed`, which says how many chunks it took."""

    def accepting(self) -> bool:
        """False while new lines should wait in the sources (backpressure); checked per chunk."""

    def dead_letter(self, chunks: list[Chunk], reason: str, text: str) -> bool:
        """Park every line of ``chunks`` durably (DLQ) and acknowledge them; False if impossible."""

    def idle(self) -> None:
        """Nothing more is queued for this sink right now: stop holding records for batching."""

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` for outstanding lines; return how many are still pending."""

    def stop(self, timeout: float) -> None:
        """Flush for up to ``timeout`` seconds, then release resources."""

    def health(self) -> SinkHealth:
        """Current state, for /health."""

    def stats(self) -> dict[str, object]:
        """Counters for /stats."""


@runtime_checkable
class ReplaySink(Protocol):
    """A sink that replays the local DLQ's entries (reprocessing, ``POST /dlq/reprocess``)."""

    def replay_blocker(self) -> str:
        """'' when records can be replayed now, else the reason they cannot (e.g. breaker open)."""

    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        """Send ``records``; entry_id -> None when it was acknowledged, else the error."""


@runtime_checkable
class HasDLQTopic(Protocol):
    """A sink with a dead-letter topic of its own, reported by GET /dlq/stats under its key."""

    dlq_topic_key: str

    def dlq_topic_stats(self) -> dict[str, Any]: ...


@runtime_checkable
class CommitsPositions(Protocol):
    """A sink that commits the sources' read positions itself, with the records (Kafka's
    ``delivery: exactly_once``): the positions sources resume from are its own."""

    @property
    def commits_positions(self) -> bool:
        """True when it does in this configuration."""

    def committed_positions(self, kind: str = "files") -> dict[str, dict[str, Any]]:
        """The positions of ``kind`` (a source's ``positions_key``: files, containers) last
        committed, as its positions file has them; known once the sink started."""

    def commit_positions_of(
        self, positions: Callable[[], dict[str, dict[str, Any]]], kind: str = "files"
    ) -> None:
        """``positions()``: the source's acknowledged positions of ``kind``, taken at each commit."""


class SinkStartError(RuntimeError):
    """The sink cannot start with this configuration; the message names the key to fix."""


@dataclass
class SinkContext:
    """What a sink is built with besides its own config section."""

    config: Config
    metrics: Metrics
    #: The local dead-letter store (``dispatcher.dlq_config``), or None when it is off.
    dlq: DeadLetterStore | None
    #: (index, count) when the agent is one worker of several (``app.workers``).
    worker: tuple[int, int] | None = None


def _no_problems(_section: Any) -> list[str]:
    return []


def _no_raw_problems(_section: Mapping[str, Any]) -> list[str]:
    return []


@dataclass(frozen=True)
class SinkComponent(Generic[C]):
    """A sink as the registry knows it."""

    #: Builds the sink from its section, or returns None when the section turns it off.
    build: Callable[[C, SinkContext], Sink | None]
    #: Whether the section turns the sink on (at least one sink must be).
    enabled: Callable[[C], bool]
    #: What would keep it from starting, found without the network (``validate`` and the start).
    problems: Callable[[C], list[str]] = _no_problems
    #: The same, from the section's raw mapping when the file failed validation (what can be said).
    raw_problems: Callable[[Mapping[str, Any]], list[str]] = _no_raw_problems
    #: The field of the lines whose value is the partition key (analysis finds it), or None.
    key_field: Callable[[C], str | None] = lambda _section: None
