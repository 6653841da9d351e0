"""What the delivery engine (:class:`~.runner.SinkRunner`) and a sink's service say to each other.

A service reports each record's outcome from its own thread: delivered, or a :class:`Failure`
with the error's type (a stable metric label) and text. It never decides what happens next: the
runner retries, parks, or sends to the dead-letter output, and acknowledges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from log_capturer.record import Chunk, ChunkGroup

if TYPE_CHECKING:
    from log_capturer.engine.runner import Attempt, Delivery, SinkRunner
    from log_capturer.reliability.dlq.replay import ReplayRecord

#: A record's headers, as its client takes them.
Headers = list[tuple[str, str | bytes | None]]


class Failure(Enum):
    """Why a record was not delivered, as far as the engine cares."""

    #: Not taken now (the server is away, a leader moved...): sent again after a back-off.
    RETRY = "retry"
    #: Not delivered within the sink's ``timeout``: parked when the sink parks what times out
    #: (``dlq_config.send_on_timeout``), else sent again at once.
    TIMEOUT = "timeout"
    #: Refused with the batch it was in, for the batch's sake (its size): sent once more alone
    #: before the refusal counts as the record's own.
    RETRY_ALONE = "retry_alone"
    #: Refused for good: to the dead-letter output, or to the local store.
    REJECT = "reject"


@dataclass(slots=True)
class Record:
    """One record as a sink sends it: its destination (a topic), value, key, partition (-1: the
    service chooses) and headers."""

    topic: str
    value: bytes
    key: str | bytes | None
    partition: int = -1
    headers: Headers | None = None


@dataclass(slots=True)
class Refused:
    """A record a service refuses before sending it (too large, an invalid partition): parked."""

    record: Record
    reason: str
    text: str


class Prepared(Protocol):
    """A chunk turned into a service's records (each service has its own class)."""

    @property
    def chunk(self) -> Chunk:
        """The chunk."""

    @property
    def nbytes(self) -> int:
        """Bytes of its records, as the service's queue holds them (what ``queue_max_bytes`` counts)."""

    @property
    def counts(self) -> Mapping[str, int]:
        """Records per destination, for the per-topic metrics."""


@dataclass
class ServiceState:
    """What a service says about its server, for /health and for the breaker."""

    #: No server reachable (the breaker counts a failure per second while records wait).
    unreachable: bool = False
    #: What /health and replay say while ``unreachable`` ('' : Kafka's "no broker reachable").
    unreachable_as: str = ""
    #: A fatal client error being handled (the client is replaced): unhealthy meanwhile.
    fatal: str = ""
    #: An unexpected error its thread survived (a bug): degraded until a round runs cleanly.
    thread_error: str = ""
    #: Its thread ended while the sink runs: unhealthy.
    thread_dead: bool = False
    #: The last error seen, for messages.
    last_error: str = ""
    #: Details shown in the sink's /health entry (e.g. each broker's state).
    details: dict[str, Any] = field(default_factory=dict)


class Service(Protocol):
    """The part of a sink that knows its server. See :mod:`log_capturer.engine`."""

    def start(self, runner: SinkRunner) -> None:
        """Connect and start its thread, which calls ``runner.tick()`` every round (a few ms
        apart) and reports outcomes from it. Raises SinkStartError naming the key to fix."""

    #: Where a record goes when nothing says otherwise (a line that could not be encoded is
    #: parked with it, for a replay).
    default_destination: str

    def prepare(self, chunk: Chunk) -> Prepared:
        """The chunk's records (called once the chunk was admitted). A service with a true
        ``releases_text`` attribute never reads the chunk's lines after this (its retries, dead
        letters and parked entries come from the prepared records), so their text may be
        dropped (``Chunk.release_text``) while the records are in flight."""

    def records_of(self, chunk: Chunk) -> list[Record]:
        """The chunk's records as they would be sent, to park them whole (they overflow, analysis
        failed on them); raises when the chunk cannot be encoded."""

    def send(self, prepared: Prepared, delivery: Delivery) -> list[Refused]:
        """Hand the records over; their outcomes are reported later (``delivery.delivered``,
        ``runner.failed``). Returns those refused before sending. May block while the client is
        full; a record it cannot hand over now goes to ``runner.resend_later``."""

    def resend(self, attempt: Attempt, alone: bool) -> bool:
        """Send one record again (outcome reported with ``runner.attempt_done``); ``alone``: in a
        batch of its own. False when the client cannot take it now (it is tried again soon)."""

    def dead_letter(self, attempt: Attempt) -> bool | None:
        """Send a rejected record to the service's dead-letter output (outcome reported with
        ``runner.dead_letter_done``): None when it has none, False when it cannot take it now."""

    def idle(self) -> None:
        """Nothing more is queued for the sink: what lingers for batching may leave now."""

    def flush_soon(self) -> None:
        """Send what lingers at the next round (a stop or a replay waits for it)."""

    def queued(self) -> int:
        """Records the client holds (queued or in flight)."""

    def state(self) -> ServiceState:
        """Its server's state, for /health and the breaker."""

    def probe(self) -> str:
        """A trial call for an idle half-open breaker (e.g. a metadata request): '' when the
        server answered, else why not."""

    def stats(self) -> dict[str, Any]:
        """Its own figures for /stats (merged into the sink's)."""

    def stop(self) -> None:
        """End its thread and close its client (after the runner drained what it could)."""

    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        """Produce the local store's records again (entry_id -> None once acknowledged, else
        why not); the runner decides whether it may (breaker) and counts the outcomes."""


class Grouping(Protocol):
    """What a service has when it can send several small chunks as one request (the Kafka
    sink): the engine then hands over the small chunks next to each other in a dispatcher batch
    together, so that its cost per chunk (admission aside) is paid once for all of them."""

    #: Whether it takes small chunks as one, for its whole life (its config): the engine then
    #: admits several chunks before it hands them over, which a service whose hand-over waits
    #: for what is admitted (exactly-once's commit) must not allow.
    grouping: bool

    def prepare_many(self, group: ChunkGroup) -> Prepared | None:
        """The records of ``group.chunks`` (each encoded with its own origin) as one, delivered
        together; None when these chunks go one by one after all."""
