"""The engine around one sink: admission, acknowledgements, retries, dead letters, health.

A record's fate is always one of:

- delivered: its chunk counts it as acknowledged;
- retried: sent again after a back-off, as often as needed (:attr:`Failure.RETRY`; a record that
  timed out is sent again at once unless the sink parks what times out), so an outage longer than
  ``timeout`` loses nothing;
- sent to the service's dead-letter output (refused for good, :attr:`Failure.REJECT`; Kafka's DLQ
  topic with the error in headers); if there is none, or it fails too, parked in the local store;
- parked in the local store (refused by the service before sending, timed out with
  ``send_on_timeout``, overflow of a stalled sink, open breaker with ``open_action: dlq``, a record
  its client refuses with an unexpected error), durably, before it counts as acknowledged.

Admission (per chunk, before it is encoded): while the circuit breaker is open, lines wait (or go
to the DLQ with ``open_action: dlq``); while it is half-open, only trial chunks pass; from the
critical backpressure level on the sources are held (:meth:`SinkRunner.accepting`), and a chunk is
admitted only if the queue stays within the emergency level with it (check and count are one step,
so concurrent dispatcher threads cannot overfill it). Once the sink is stalled (nothing
acknowledged for ``timeout``), lines waiting at the emergency level overflow to the local DLQ, and
with ``timeout_escalation`` lines waiting below it too. See :mod:`log_capturer.reliability.backpressure`.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from log_capturer.engine.contract import Failure, Prepared, Record, Refused, Service
from log_capturer.engine.parking import Parking
from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk, ChunkGroup
from log_capturer.reliability.backpressure import Backpressure, Level
from log_capturer.reliability.circuit_breaker import BreakerState, CircuitBreaker
from log_capturer.reliability.config import BackpressureConfig, CircuitBreakerConfig
from log_capturer.reliability.dlq import DeadLetterStore, DLQEntry
from log_capturer.sinks.base import SendFailed, SinkHealth, Status
from log_capturer.sinks.kafka.quiet import Repeats

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

    from log_capturer.reliability.dlq.replay import ReplayRecord

log = logging.getLogger(__name__)

#: First back-off of a record (doubled at each attempt, up to RETRY_MAX_DELAY).
RETRY_BASE_DELAY = 0.25
#: Longest back-off between two attempts at a record.
RETRY_MAX_DELAY = 30.0
#: A failed local park is tried again after this long (the service's thread).
PARK_RETRY = 1.0
#: How long an idle half-open breaker's trial call may take.
PROBE_TIMEOUT = 5.0
#: Bytes a record adds to its line besides the origin's fields (timestamp, level, keys, quotes):
#: the estimate of a chunk's size before the first chunk was encoded.
ENVELOPE_BYTES = 96
#: With a service that groups (:class:`~.contract.Grouping`): chunks of at most SMALL_CHUNK
#: lines next to each other in a batch are handed over together, up to GROUP_LINES lines.
SMALL_CHUNK = 64
GROUP_LINES = 1024


@dataclass
class DeliveryPolicy:
    """A sink's delivery settings (its config section's; the same keys for every sink)."""

    queue_size: int
    queue_max_bytes: int
    #: After this long without an acknowledgement the sink is stalled (and what waits may overflow).
    timeout: float
    backpressure: BackpressureConfig
    circuit_breaker: CircuitBreakerConfig
    #: Records not delivered within ``timeout`` are parked (else sent again at once).
    park_on_timeout: bool

    @classmethod
    def of(cls, section: DeliverySection, park_on_timeout: bool) -> DeliveryPolicy:
        """The policy of a sink's config section (every sink has these keys)."""
        return cls(
            queue_size=section.queue_size,
            queue_max_bytes=section.queue_max_bytes,
            timeout=section.timeout,
            backpressure=section.backpressure_config,
            circuit_breaker=section.circuit_breaker,
            park_on_timeout=park_on_timeout,
        )


class DeliverySection(Protocol):
    """The keys of a sink's section that the engine reads."""

    @property
    def queue_size(self) -> int: ...
    @property
    def queue_max_bytes(self) -> int: ...
    @property
    def timeout(self) -> float: ...
    @property
    def backpressure_config(self) -> BackpressureConfig: ...
    @property
    def circuit_breaker(self) -> CircuitBreakerConfig: ...


class Delivery:
    """One chunk's records in flight. Touched only by the service's thread once handed over."""

    __slots__ = ("chunk", "failed", "failing", "jitter", "nbytes", "remaining", "runner", "started", "topics")

    def __init__(self, runner: SinkRunner, chunk: Chunk, topics: dict[str, int]) -> None:
        self.runner = runner
        self.chunk = chunk
        #: Records per topic handed over: the service's counts, less those refused or parked.
        # One extra count is held by the sender until it has handed over every record.
        self.remaining = len(chunk.lines) + 1
        self.started = time.monotonic()
        self.topics = topics
        self.failed = 0
        self.nbytes = 0
        #: A delivery failure of this chunk was counted by the circuit breaker.
        self.failing = False
        #: The share of the nominal back-off its records wait (0.5-1: "equal jitter"), drawn once
        #: so a failed batch is retried together, and batches failed at once spread apart.
        self.jitter = 0.5 + 0.5 * random.random()

    def delivered(self, n: int = 1) -> None:
        """``n`` of its records were delivered (or settled otherwise: parked, sent to the DLQ)."""
        self.remaining -= n
        if self.remaining == 0:
            self.runner._finished(self)


class Claim(NamedTuple):
    """What a chunk holds in the sink: records, and bytes of encoded records."""

    records: int
    nbytes: int


def backoff(attempt: int, jitter: float) -> float:
    """Seconds before attempt ``attempt + 1`` of a record: doubling from RETRY_BASE_DELAY up to
    RETRY_MAX_DELAY, times ``jitter`` (0.5-1), so agents and batches that failed together do
    not come back together."""
    # The exponent is capped: 2**1024 does not fit a float (an outage of some hours at 30 s).
    return min(RETRY_BASE_DELAY * float(1 << min(attempt, 32)), RETRY_MAX_DELAY) * jitter


@dataclass(order=True)
class Attempt:
    """One record on its way again: a retry, a dead letter, a record to park."""

    due: float
    seq: int
    delivery: Delivery = field(compare=False)
    record: Record = field(compare=False)
    attempt: int = field(compare=False)
    #: Set when the record is to be parked or dead-lettered: the reason and the error text.
    park_reason: str = field(compare=False, default="")
    error: str = field(compare=False, default="")


class SinkRunner:
    """The engine around one sink's :class:`~.contract.Service` (see the module's docstring)."""

    def __init__(
        self,
        service: Service,
        policy: DeliveryPolicy,
        metrics: Metrics,
        dlq: DeadLetterStore | None,
        name: str,
        sink_type: str,
    ) -> None:
        self.service = service
        #: The service's ``prepare_many`` when it groups small chunks (:class:`~.contract.Grouping`).
        self._prepare_many: Callable[[ChunkGroup], Prepared | None] | None = (
            getattr(service, "prepare_many", None) if getattr(service, "grouping", False) else None
        )
        self.policy = policy
        self.metrics = metrics
        self.dlq = dlq
        self.name = name
        self.sink_type = sink_type
        #: The service never reads a chunk's lines once it prepared it (``Service.releases_text``).
        self.releases_text: bool = bool(getattr(service, "releases_text", False))
        self.parking = Parking(dlq, metrics, name, sink_type)
        cb = policy.circuit_breaker
        self.breaker = CircuitBreaker(
            cb.failure_threshold,
            cb.success_threshold,
            cb.timeout,
            cb.half_open_max_calls,
            on_change=self._breaker_changed,
            enabled=cb.enabled,
        )
        pc = policy.backpressure
        self.pressure = Backpressure(pc, metrics, name, sink_type)
        self._critical = pc.queue_critical_threshold
        self._emergency = pc.queue_emergency_threshold
        #: Records, and bytes of encoded records, the sink may hold before new chunks wait
        #: (the emergency level; the sources already wait from the critical level on).
        self._room = pc.queue_emergency_threshold * policy.queue_size
        self._room_bytes = pc.queue_emergency_threshold * policy.queue_max_bytes
        #: Lines waiting at the emergency level overflow to the DLQ once the sink is stalled;
        #: a threshold of 1.0 turns that off (they wait at the queue's capacity).
        self._overflows = pc.enabled and pc.queue_emergency_threshold < 1.0
        #: The level while chunks wait for room (the gauges keep it, so that one wait is one
        #: event), and how many senders wait for room.
        self._waiting_level = Level.EMERGENCY if self._overflows else Level.CRITICAL
        self._waiting = 0
        #: Bytes encoding added per record to the last chunk (0: none encoded yet), see _claim().
        self._record_overhead = 0.0
        self._wait_steps = self.pressure.wait_steps()
        #: Hand-offs to the service's thread: the senders' own counts (and what they parked),
        #: and records a sender could not hand over.
        self._settle: collections.deque[tuple[Delivery, int]] = collections.deque()
        self._resend: collections.deque[tuple[Delivery, Record]] = collections.deque()
        # The service's thread only:
        self._retries: list[Attempt] = []
        self._alone: collections.deque[Attempt] = collections.deque()
        self._to_dead_letter: collections.deque[Attempt] = collections.deque()
        self._parking: list[Attempt] = []
        self._park_retry_at = 0.0
        self._seq = itertools.count()
        #: Set whenever room may have appeared (acknowledgements, the breaker moved).
        self.space = threading.Event()
        self._stop = threading.Event()
        self._send_lock = threading.Lock()
        # Counters: the senders' are written under _send_lock, the others by the service's thread.
        self.produced = 0
        self.bytes_produced = 0
        self.finished = 0
        self.bytes_finished = 0
        self.delivered = 0
        self.sent_to_dead_letter = 0
        self.retried = 0
        self.delivered_by_topic: dict[str, int] = {}
        #: Labelled metric children of _finished() (service thread only), see _topic_metrics().
        self._by_topic: dict[str, tuple[Counter, Histogram, Histogram]] = {}
        self._sink_metrics: tuple[Histogram, Counter] | None = None
        self._last_error = ""
        self._last_progress = time.monotonic()
        self._last_second = 0.0
        self._repeats = Repeats()
        self._probing = threading.Event()
        self._probe_thread: threading.Thread | None = None
        #: Set by stop() before the service closes its client: purge reports change nothing.
        self.closing = False

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.metrics.kafka_circuit_breaker_state.labels(self.sink_type).set(int(BreakerState.CLOSED))
        self._last_progress = time.monotonic()
        self.service.start(self)

    @property
    def parked(self) -> int:
        return self.parking.parked

    @property
    def overflowed(self) -> int:
        return self.parking.overflowed

    @property
    def outstanding(self) -> int:
        return self.produced - self.finished

    @property
    def utilization(self) -> float:
        """Share of the sink's queue in use: records, or bytes, whichever is fuller."""
        by_count = self.outstanding / self.policy.queue_size
        by_bytes = (self.bytes_produced - self.bytes_finished) / self.policy.queue_max_bytes
        return by_count if by_count > by_bytes else by_bytes

    def idle(self) -> None:
        """The dispatcher has nothing more queued: what lingers may leave now."""
        self.service.idle()

    def flush(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.outstanding > 0 and time.monotonic() < deadline:
            self.service.flush_soon()
            time.sleep(0.01)
        return self.outstanding

    def stop(self, timeout: float) -> None:
        remaining = self.flush(timeout)
        if remaining:
            log.warning(
                "%s stopping with %d lines unacknowledged; they were not checkpointed "
                "and will be read again on restart",
                self.name,
                remaining,
                extra={"sink": self.name, "unacknowledged": remaining},
            )
        self._stop.set()
        self.space.set()
        probe = self._probe_thread
        if probe is not None:
            probe.join(PROBE_TIMEOUT + 1)
        self.closing = True
        self.service.stop()
        if self._parking:
            self._park_pending()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- admission (dispatcher threads) --------------------------------------------------------
    def send(self, chunks: list[Chunk]) -> None:
        """Take each chunk in turn: admit it (wait for room, or overflow), encode it, hand it over.
        Raises :class:`SendFailed` only when a chunk cannot even be encoded (a bug): the chunks
        before it are taken, it and the rest are untouched, so the dispatcher retries only them.

        With a service that groups (:class:`~.contract.Grouping`), small chunks admitted at once
        are held and handed over together (:meth:`_hand_over_group`) when a chunk that is not
        small, or must wait for room, comes, when they reach ``GROUP_LINES``, and at the end."""
        if self._prepare_many is None or len(chunks) < 2:
            for i, chunk in enumerate(chunks):
                if not self._take(chunks, i, self._claim(chunk)):
                    return
            return
        group: list[Chunk] = []
        claims: list[Claim] = []
        lines = 0
        for i, chunk in enumerate(chunks):
            claim = self._claim(chunk)
            if claim.records <= SMALL_CHUNK and self._admit_now(claim):
                group.append(chunk)
                claims.append(claim)
                lines += claim.records
                if lines >= GROUP_LINES:
                    self._hand_over_group(i + 1 - len(group), group, claims)
                    group, claims, lines = [], [], 0
                continue
            if group:
                self._hand_over_group(i - len(group), group, claims)
                group, claims, lines = [], [], 0
            if not self._take(chunks, i, claim):
                return
        if group:
            self._hand_over_group(len(chunks) - len(group), group, claims)

    def _take(self, chunks: list[Chunk], i: int, claim: Claim) -> bool:
        """Admit, encode and hand over ``chunks[i]`` alone; False when it was parked (overflow)
        or the sink is stopping."""
        if not self._admit(chunks, i, claim):
            return False
        self._prepare_and_hand_over(i, chunks[i], claim)
        return True

    def _prepare_and_hand_over(self, i: int, chunk: Chunk, claim: Claim) -> None:
        """Encode an admitted chunk (the batch's ``i``-th) and hand it over; if it cannot be
        encoded (a bug), give its claim back and raise :class:`SendFailed`."""
        try:
            prepared = self.service.prepare(chunk)
        except Exception as exc:
            self._release(claim)
            raise SendFailed(i, exc) from exc
        self._true_up(claim, prepared)
        self._hand_over(prepared)

    def _hand_over_group(self, first: int, group: list[Chunk], claims: list[Claim]) -> None:
        """Hand over admitted small chunks (the batch's from index ``first`` on): as one when
        there are several and the service takes them as one, else one by one."""
        prepare_many = self._prepare_many
        assert prepare_many is not None
        if len(group) > 1:
            joined = ChunkGroup(group)
            try:
                prepared = prepare_many(joined)
            except Exception as exc:  # a bug: counted, and the chunks go one by one instead
                self.unexpected("prepare_failed", exc)
                prepared = None
            if prepared is not None:
                self._true_up(Claim(len(joined.lines), sum(c.nbytes for c in claims)), prepared)
                self._hand_over(prepared)
                if self.releases_text:
                    joined.release_text()  # its chunks' lines go when the dispatcher is done
                return
        for j, (chunk, claim) in enumerate(zip(group, claims, strict=True)):
            try:
                self._prepare_and_hand_over(first + j, chunk, claim)
            except SendFailed:
                for rest in claims[j + 1 :]:  # admitted too, and not handed over either
                    self._release(rest)
                raise

    def _claim(self, chunk: Chunk) -> Claim:
        """What ``chunk`` will hold in the sink: its records, and their bytes as encoded, estimated
        before it is encoded (its text plus the bytes encoding added per record to the last chunk
        of its origin's shape), so that a chunk waiting for room holds no encoded copy."""
        n = len(chunk.lines)
        overhead = self._record_overhead or len(chunk.origin.encoded) + ENVELOPE_BYTES
        return Claim(n, int(chunk.text_bytes + n * overhead))

    def accepting(self) -> bool:
        """May the sources hand over more lines now? False from the critical level on, and while
        the breaker is open with ``open_action: wait``, unless the waiting lines may overflow."""
        breaker = self.breaker
        util = self.utilization
        if breaker.closed:
            if not self.pressure.enabled or util < self._critical:
                return True
        elif breaker.state is BreakerState.HALF_OPEN or self.policy.circuit_breaker.open_action == "dlq":
            return True
        return self._may_overflow(time.monotonic(), self._overflows and util >= self._emergency)

    def _admit_now(self, claim: Claim) -> bool:
        """Count a chunk as produced if it may be produced without waiting (the breaker closed,
        room for it)."""
        if self.breaker.closed and self._reserve(claim, self.pressure.enabled):
            if self.pressure.level is not Level.NORMAL:
                self.pressure.observe(self.utilization)
            return True
        return False

    def _admit(self, chunks: list[Chunk], i: int, claim: Claim) -> bool:
        """Wait until ``chunks[i]`` may be produced and count it as produced (True), or park
        ``chunks[i:]`` / stop (False)."""
        if self._admit_now(claim):
            return True
        waiting = [False]  # counted in self._waiting: this sender waits for room
        try:
            return self._wait_admission(chunks, i, claim, waiting)
        finally:
            self._count_waiting(waiting, False)

    def _count_waiting(self, waiting: list[bool], now: bool) -> None:
        if waiting[0] != now:
            waiting[0] = now
            with self._send_lock:
                self._waiting += 1 if now else -1

    def _wait_admission(self, chunks: list[Chunk], i: int, claim: Claim, waiting: list[bool]) -> bool:
        breaker = self.breaker
        steps = self._wait_steps
        step = 0
        since = time.monotonic()
        while not self._stop.is_set():
            self.space.clear()
            state = breaker.state
            if state is BreakerState.CLOSED:
                if self._reserve(claim, self.pressure.enabled):
                    self.pressure.observe(self.utilization)
                    return True
                # The chunk would take the queue past the emergency level: it waits for room, and
                # overflows to the DLQ once the sink has acknowledged nothing for ``timeout``.
                self._count_waiting(waiting, True)
                self.pressure.observe(self.utilization, at_least=self._waiting_level)
                why = f"the sink queue is {self.utilization:.0%} full"
                if step == 0:
                    # Nothing more can be produced until records are acknowledged, so what
                    # lingers cannot grow into bigger batches: it may leave now.
                    self.idle()
            elif state is BreakerState.HALF_OPEN:
                self._count_waiting(waiting, False)
                # A trial call only while there is room: trials must not overfill the queue.
                if self._reserve(claim, True, trial=True):
                    return True
                why = "the circuit breaker is half-open and its trial calls are in flight"
            else:
                self._count_waiting(waiting, False)
                why = "the circuit breaker is open"
                if self.policy.circuit_breaker.open_action == "dlq" and self._park_chunks(
                    chunks[i:], "circuit_open", f"not sent: {why} (circuit_breaker.open_action: dlq)"
                ):
                    return False
            now = time.monotonic()
            at_emergency = self._overflows and not self._fits(claim)
            if self._may_overflow(now, at_emergency):
                reason = "backpressure" if at_emergency or state is BreakerState.CLOSED else "circuit_open"
                text = (
                    f"overflow after waiting {now - since:.1f}s: {why}, and the sink acknowledged "
                    f"nothing for {now - self._last_progress:.1f}s"
                )
                if self._park_chunks(chunks[i:], reason, text):
                    return False
            self.space.wait(steps[min(step, len(steps) - 1)])
            step += 1
        return False

    def _reserve(self, claim: Claim, limited: bool, trial: bool = False) -> bool:
        """Count the chunk's records and bytes as produced (before they are: an outcome may come
        before ``_hand_over`` returns) if, with them, the sink stays within the emergency level,
        or it holds nothing (a chunk larger than the room goes alone), or not ``limited``. A trial
        (half-open breaker) also takes one of the breaker's permits. Check and count are one step
        under the lock, so dispatcher threads cannot together push the queue past it."""
        n, nbytes = claim
        with self._send_lock:
            held = self.produced - self.finished
            if (
                limited
                and held > 0
                and (
                    held + n > self._room
                    or self.bytes_produced - self.bytes_finished + nbytes > self._room_bytes
                )
            ):
                return False
            if trial and not self.breaker.allow():
                return False
            if held <= 0:
                # Busy again after being idle: a stall is measured from now, not from the last ack.
                self._last_progress = time.monotonic()
            self.produced += n
            self.bytes_produced += nbytes
        return True

    def _fits(self, claim: Claim) -> bool:
        """Would the sink stay within the emergency level with this chunk (or hold nothing)?"""
        held = self.outstanding
        return held <= 0 or (
            held + claim.records <= self._room
            and self.bytes_produced - self.bytes_finished + claim.nbytes <= self._room_bytes
        )

    def _release(self, claim: Claim) -> None:
        """Give back a claim whose chunk was not produced (it could not be encoded)."""
        with self._send_lock:
            self.produced -= claim.records
            self.bytes_produced -= claim.nbytes

    def _true_up(self, claim: Claim, prepared: Prepared) -> None:
        """The chunk is encoded: count its exact bytes instead of the estimate, and keep what
        encoding added per record for the next estimate."""
        with self._send_lock:
            self.bytes_produced += prepared.nbytes - claim.nbytes
        if claim.records:
            self._record_overhead = (prepared.nbytes - prepared.chunk.text_bytes) / claim.records

    def _may_overflow(self, now: float, at_emergency: bool) -> bool:
        """Waiting lines go to the DLQ once the sink is stalled (nothing acknowledged for
        ``timeout`` while records waited) and either they wait at the emergency level or
        ``timeout_escalation`` is on."""
        if self.breaker.closed and self.outstanding <= 0:
            return False
        if now - self._last_progress < self.policy.timeout:
            return False
        bp = self.policy.backpressure
        return bp.enabled and (bp.timeout_escalation or at_emergency)

    def _park_chunks(self, chunks: list[Chunk], reason: str, text: str, *, overflow: bool = True) -> bool:
        """Park every record of ``chunks`` in the local DLQ and acknowledge them. False if it refused.
        ``overflow``: lines that waited for room or for the breaker (counted in ``overflowed``)."""
        entries: list[DLQEntry] = []
        for chunk in chunks:
            entries += self._dead_entries(chunk, reason, text)
        if not self.parking.park(entries, overflow=overflow):
            return False
        for chunk in chunks:
            if chunk.lines:
                chunk.ack(len(chunk.lines))
        return True

    def _dead_entries(self, chunk: Chunk, reason: str, text: str) -> list[DLQEntry]:
        """DLQ entries for every line of ``chunk``: its records as they would have been sent, or,
        if the chunk cannot be encoded (analysis failed on it), the lines with their origin."""
        n = len(chunk.lines)
        if not n:
            return []
        try:
            if len(chunk.levels) != n:
                chunk.levels = [""] * n  # not analysed: no level, the default destination
                chunk.keys = None
            records = self.service.records_of(chunk)
        except Exception as exc:
            origin = chunk.origin
            why = f"{text} (the record could not be encoded either: {type(exc).__name__}: {exc})"
            return [
                DLQEntry(
                    {
                        # As text JSON can hold (a lone surrogate, say, is what may have failed).
                        "message": line.encode("utf-8", "backslashreplace").decode("utf-8"),
                        "source_type": origin.source_type,
                        "source_id": origin.source_id,
                        "labels": origin.labels,
                    },
                    why,
                    reason,
                    self.name,
                    topic=self.service.default_destination,
                    key=origin.source_id,
                )
                for line in chunk.lines
            ]
        return [self._entry_of(r, reason, text) for r in records]

    def dead_letter(self, chunks: list[Chunk], reason: str, text: str) -> bool:
        """Park ``chunks`` whole (the dispatcher's last resort: analysis failed, or ``send`` raised)."""
        return self._park_chunks(chunks, reason, text, overflow=False)

    # -- hand-over (dispatcher threads) --------------------------------------------------------
    def _hand_over(self, prepared: Prepared) -> None:
        """Hand an admitted chunk to the service. Never raises: what the service refuses before
        sending is parked, so the chunk's count always settles."""
        chunk = prepared.chunk
        # A plain dict copy (collections.Counter's constructor runs in Python, once a chunk).
        topic_counts = dict(prepared.counts)
        delivery = Delivery(self, chunk, topic_counts)
        delivery.nbytes = prepared.nbytes
        try:
            refused = self.service.send(prepared, delivery)
        except Exception as exc:  # a bug in the service: every record goes to the retries
            self.unexpected("hand_over_failed", exc)
            refused = []
        if refused and not self._park_refused(refused):
            # Stopping while the DLQ refuses writes: these lines stay unacknowledged, so the
            # chunk is never checkpointed and a restart reads it again.
            return
        for r in refused:
            topic_counts[r.record.topic] = topic_counts.get(r.record.topic, 0) - 1
        self._settle.append((delivery, len(refused)))

    def _park_refused(self, refused: list[Refused]) -> bool:
        entries = [self._entry_of(r.record, r.reason, r.text) for r in refused]
        return self.parking.park(entries, wait=self._stop.wait)

    def _entry_of(self, record: Record, reason: str, text: str, retries: int = 0) -> DLQEntry:
        return self.parking.entry(
            record.value, record.topic, record.key, reason, text, retries, record.headers
        )

    def resend_later(self, delivery: Delivery, record: Record) -> None:
        """A record the service could not hand over now (its client is being replaced, or a bug
        stopped it): sent again from the service's thread."""
        self._resend.append((delivery, record))

    def unexpected(self, what: str, exc: BaseException) -> None:
        """Count and log an exception that is a bug, not a delivery problem."""
        self.metrics.errors.labels(self.sink_type, what).inc()
        text = f"{what}: {type(exc).__name__}: {exc}"
        self.note_error(text)
        if self._repeats.admit(text) is not None:
            log.error("%s: unexpected error (%s)", self.name, text, exc_info=exc, extra={"sink": self.name})

    def note_error(self, text: str) -> None:
        self._last_error = text

    # -- the service's thread ------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """One round of the engine's work on the service's thread: settle what the senders handed
        over, send due retries, records to send alone and dead letters, park what waits for the
        local store, and once a second the gauges, the breaker's view of the server, a probe."""
        while self._settle:
            delivery, parked = self._settle.popleft()
            delivery.failed += parked
            delivery.delivered(parked + 1)
        while self._resend:
            delivery, rec = self._resend.popleft()
            heapq.heappush(self._retries, Attempt(0.0, next(self._seq), delivery, rec, 0))
        if self._retries:
            self._run_due_retries(now)
        if self._alone:
            self._send_alone()
        if self._to_dead_letter:
            self._send_dead_letters()
        if self._parking and now >= self._park_retry_at:
            self._park_pending()
        if now - self._last_second >= 1.0:
            self._last_second = now
            self._each_second()

    def quiet(self) -> bool:
        """Nothing held and nothing for :meth:`tick` to do but its once-a-second round: no record
        in flight, none waiting to be settled, retried, sent alone, dead-lettered or parked, and
        the breaker closed (an open or half-open one has trial calls and probes to time)."""
        return (
            self.produced - self.finished <= 0
            and not self._settle
            and not self._resend
            and not self._retries
            and not self._alone
            and not self._to_dead_letter
            and not self._parking
            and self.breaker.closed
        )

    def _finished(self, d: Delivery) -> None:
        n = len(d.chunk.lines)
        self.finished += n
        self.bytes_finished += d.nbytes
        delivered = n - d.failed
        self.delivered += delivered
        now = time.monotonic()
        elapsed = now - d.started
        by_topic = self.delivered_by_topic
        for topic, count in d.topics.items():
            if count <= 0:
                continue
            by_topic[topic] = by_topic.get(topic, 0) + count
            produced, batch_size, batch_duration = self._topic_metrics(topic)
            produced.inc(count)
            batch_size.observe(count)
            batch_duration.observe(elapsed)
        m = self._sink_metrics
        if m is None:
            m = self._sink_metrics = (
                self.metrics.sink_send_duration.labels(self.sink_type),
                self.metrics.logs_sent.labels(self.sink_type, "success"),
            )
        m[0].observe(elapsed)
        if delivered:
            m[1].inc(delivered)
            self._last_progress = now
            self.breaker.record_success()
        self.space.set()
        d.chunk.ack(n)

    def _topic_metrics(self, topic: str) -> tuple[Counter, Histogram, Histogram]:
        """A topic's delivery metrics (records produced, records per chunk, time to deliver),
        looked up in the registry once per topic (``labels()`` takes a lock and checks its
        values: five lookups a chunk were a tenth of the engine's work per chunk of one line)."""
        children = self._by_topic.get(topic)
        if children is None:
            m = self.metrics
            children = self._by_topic[topic] = (
                m.kafka_messages_produced.labels(topic, "success"),
                m.kafka_batch_size.labels(topic),
                m.kafka_batch_send_duration.labels(topic),
            )
        return children

    def failed(
        self, d: Delivery, record: Record, failure: Failure, error_type: str, text: str, attempt: int = 0
    ) -> None:
        """A record of ``d`` was not delivered (``text``: the error, ``error_type``: its label)."""
        if self.closing:
            return  # purged by stop(): unacknowledged, so read again on restart
        m = self.metrics
        m.kafka_producer_errors.labels(record.topic, error_type).inc()
        m.kafka_messages_produced.labels(record.topic, "error").inc()
        self.note_error(text)
        now = time.monotonic()
        if failure is Failure.RETRY_ALONE and attempt == 0:
            # Refused with its batch for the batch's size: once more alone before it counts.
            self._alone.append(Attempt(now, next(self._seq), d, record, 1))
            return
        if failure in (Failure.REJECT, Failure.RETRY_ALONE):
            self._to_dead_letter.append(
                Attempt(now, next(self._seq), d, record, attempt, park_reason="send_error", error=text)
            )
            return
        # Retriable, or timed out: the server is not taking records right now.
        if not d.failing or not self.breaker.closed:
            d.failing = True
            self.breaker.record_failure(text)
        if failure is Failure.TIMEOUT and self.policy.park_on_timeout:
            self._parking.append(
                Attempt(
                    now,
                    next(self._seq),
                    d,
                    record,
                    attempt,
                    park_reason="timeout",
                    error=f"not delivered within timeout={self.policy.timeout:g}s ({text})",
                )
            )
            return
        delay = 0.0 if failure is Failure.TIMEOUT else backoff(attempt, d.jitter)
        heapq.heappush(self._retries, Attempt(now + delay, next(self._seq), d, record, attempt + 1))

    def attempt_done(self, a: Attempt, failure: Failure | None, error_type: str = "", text: str = "") -> None:
        """The outcome of a record sent again (a retry, or alone)."""
        if failure is None:
            self._last_progress = time.monotonic()
            self.breaker.record_success()
            a.delivery.delivered(1)
        else:
            self.failed(a.delivery, a.record, failure, error_type, text, a.attempt)

    def _run_due_retries(self, now: float) -> None:
        breaker = self.breaker
        while self._retries and self._retries[0].due <= now:
            # While the breaker is open, retries wait; half-open, each is a trial call.
            if not breaker.closed and not breaker.allow():
                return
            a = heapq.heappop(self._retries)
            try:
                sent = self.service.resend(a, alone=False)
            except Exception as exc:
                self._unproducible(a, exc)
                continue
            if not sent:
                a.due = now + 0.05
                heapq.heappush(self._retries, a)
                return
            self.retried += 1

    def _send_alone(self) -> None:
        """Send the records refused with their batch again, each in a batch of its own."""
        while self._alone:
            a = self._alone[0]
            try:
                sent = self.service.resend(a, alone=True)
            except Exception as exc:
                self._unproducible(a, exc)
            else:
                if not sent:
                    return
                self.retried += 1
            self._alone.popleft()

    def _send_dead_letters(self) -> None:
        """Records refused for good go to the service's dead-letter output, or are parked."""
        while self._to_dead_letter:
            a = self._to_dead_letter[0]
            try:
                sent = self.service.dead_letter(a)
            except Exception as exc:
                self._unproducible(a, exc)
                sent = True
            if sent is False:
                return
            self._to_dead_letter.popleft()
            if sent is None:
                self._parking.append(a)

    def dead_letter_done(self, a: Attempt, error: str | None, where: str) -> None:
        """The dead-letter output took the record (``error`` None), or failed too: then parked."""
        if error is None:
            self.sent_to_dead_letter += 1
            self.metrics.kafka_dlq_messages.labels(a.record.topic, a.park_reason).inc()
            self.metrics.logs_sent.labels(self.sink_type, "dlq").inc()
            log.warning(
                "record sent to the DLQ %s: %s",
                where,
                a.error,
                extra={"sink": self.name, "topic": a.record.topic, "reason": a.park_reason},
            )
            self._settle_dead(a)
            return
        a.error = f"{a.error}; the DLQ {where} failed too: {error}"
        self._parking.append(a)

    def _park_pending(self) -> None:
        """Park the records waiting for the local store, in one durable write."""
        pending, self._parking = self._parking, []
        entries = [self._entry_of(a.record, a.park_reason, a.error, a.attempt) for a in pending]
        if not self.parking.park(entries):
            self._parking = pending + self._parking
            self._park_retry_at = time.monotonic() + PARK_RETRY
            return
        for a in pending:
            self._settle_dead(a)

    def _unproducible(self, a: Attempt, exc: Exception) -> None:
        """The client refused the record with an unexpected error (a bug, not the server): park it
        locally with the error, rather than try again for ever."""
        self.unexpected("produce_failed", exc)
        why = f"could not be produced: {type(exc).__name__}: {exc}"
        a.error = f"{a.error}; {why}" if a.error else why
        a.park_reason = a.park_reason or "send_error"
        self._parking.append(a)

    def _settle_dead(self, a: Attempt) -> None:
        a.delivery.failed += 1
        topics = a.delivery.topics
        topics[a.record.topic] = topics.get(a.record.topic, 0) - 1
        a.delivery.delivered(1)

    def _each_second(self) -> None:
        util = self.utilization
        self.pressure.observe(util, at_least=self._waiting_level if self._waiting else Level.NORMAL)
        self.metrics.kafka_queue_size.labels(self.sink_type).set(self.service.queued())
        self.metrics.kafka_queue_utilization.labels(self.sink_type).set(min(1.0, util))
        state = self.service.state()
        if state.unreachable and self.outstanding > 0:
            self.breaker.record_failure(f"no server reachable; last error: {state.last_error}")
        if self._idle_half_open():
            self._probing.set()
            self._probe_thread = threading.Thread(target=self._probe, name=f"{self.name}-probe", daemon=True)
            self._probe_thread.start()

    def _idle_half_open(self) -> bool:
        """Half-open with nothing to serve as a trial call: no record held or waiting for a
        retry (a chunk waiting to be produced takes a trial permit itself)."""
        return (
            not self._probing.is_set()
            and self.breaker.state is BreakerState.HALF_OPEN
            and self.outstanding <= 0
            and not self._retries
            and not self._alone
        )

    def _probe(self) -> None:
        """A trial call for an idle half-open breaker, which would otherwise stay half-open (and
        the sink degraded) until new lines come; at most one at a time, once a second. Success
        counts as a successful trial call, failure opens it again."""
        try:
            if not self.breaker.allow():
                return
            problem = self.service.probe()
            if problem:
                self.breaker.record_failure(f"trial call failed: {problem}")
            else:
                self.breaker.record_success()
        finally:
            self._probing.clear()

    def _breaker_changed(self, old: BreakerState, new: BreakerState, reason: str) -> None:
        self.metrics.kafka_circuit_breaker_state.labels(self.sink_type).set(int(new))
        self.space.set()
        logger = log.warning if new is BreakerState.OPEN else log.info
        logger(
            "circuit breaker %s -> %s: %s",
            old.label,
            new.label,
            reason,
            extra={"sink": self.name, "circuit_breaker": new.label},
        )

    def progressed(self) -> None:
        """The server took something (the service says so): the sink is not stalled."""
        self._last_progress = time.monotonic()

    # -- replay of parked entries (reprocessor thread) -----------------------------------------
    def replay_blocker(self) -> str:
        if self._stop.is_set():
            return "the sink is stopping"
        state = self.service.state()
        if state.fatal:
            return "the producer is being recreated after a fatal error"
        breaker = self.breaker
        bstate = breaker.state
        if bstate is BreakerState.OPEN:
            return "the circuit breaker is open"
        if bstate is BreakerState.HALF_OPEN and not breaker.allow():
            # With a permit, a replay batch is a trial call (its deliveries may close the breaker).
            return "the circuit breaker is half-open and its trial calls are in flight"
        if state.unreachable:
            return state.unreachable_as or "no broker is reachable"
        return ""

    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        """Send parked records again; entry_id -> None once acknowledged, else the error."""
        return self.service.replay(records, timeout)

    def replayed(self, topic: str, failure: Failure | None, error_type: str, text: str) -> None:
        """A replayed record's outcome (the service's thread): the breaker and the metrics."""
        if failure is None:
            self._last_progress = time.monotonic()
            self.breaker.record_success()
            self.metrics.kafka_messages_produced.labels(topic, "success").inc()
            return
        if failure is not Failure.REJECT:
            self.breaker.record_failure(f"replay: {text}")
        self.metrics.kafka_producer_errors.labels(topic, error_type).inc()

    # -- reporting -----------------------------------------------------------------------------
    def health(self) -> SinkHealth:
        status: Status = "healthy"
        message = "OK"
        breaker = self.breaker
        bstate = breaker.state
        state = self.service.state()
        waiting = len(self._retries) + len(self._alone)
        if state.thread_dead and not self._stop.is_set():
            status, message = "unhealthy", "its thread ended: no delivery is reported any more"
        elif state.fatal:
            status, message = "unhealthy", f"fatal producer error, recreating the producer: {state.fatal}"
        elif state.thread_error:
            status, message = "degraded", f"its thread hit an unexpected error: {state.thread_error}"
        elif bstate is BreakerState.OPEN:
            status = "unhealthy"
            message = (
                f"circuit breaker open ({breaker.last_failure}); trial calls in {breaker.retry_in():.0f}s; "
                f"lines wait{' or go to the DLQ' if self.policy.circuit_breaker.open_action == 'dlq' else ''}"
            )
        elif state.unreachable:
            status = "unhealthy"
            message = f"{state.unreachable_as or 'no broker reachable'}; last error: {state.last_error}"
        elif self.parking.error:
            status, message = "unhealthy", f"cannot park records in the local DLQ: {self.parking.error}"
        elif bstate is BreakerState.HALF_OPEN:
            status, message = "degraded", "circuit breaker half-open: trial calls decide whether it closes"
        elif self.pressure.level >= Level.CRITICAL:
            status = "degraded"
            message = f"sink queue {self.utilization:.0%} full: the sources are held back (backpressure)"
            if self.pressure.level is Level.EMERGENCY:
                message += "; waiting lines overflow to the DLQ if Kafka acknowledges nothing for the timeout"
        elif waiting:
            status = "degraded"
            message = f"{waiting} records waiting to be retried; last error: {self._last_error}"
        return SinkHealth(
            self.name,
            status,
            message,
            details={
                "outstanding": self.outstanding,
                **state.details,
                "circuit_breaker": breaker.snapshot(),
                "backpressure": {
                    "level": self.pressure.level.label,
                    "utilization": round(self.utilization, 4),
                },
            },
        )

    def stats(self) -> dict[str, object]:
        return {
            "produced": self.produced,
            "delivered": self.delivered,
            # Every record parked in the local DLQ; overflowed_to_dlq is the part of them that
            # overflowed before it was produced (not to be added to parked).
            "parked": self.parked,
            "sent_to_dlq_topic": self.sent_to_dead_letter,
            "overflowed_to_dlq": self.overflowed,
            "retried": self.retried,
            "outstanding": self.outstanding,
            "outstanding_bytes": self.bytes_produced - self.bytes_finished,
            "utilization": round(self.utilization, 4),
            "retry_queue": len(self._retries) + len(self._alone),
            "waiting_for_dlq": len(self._parking) + len(self._to_dead_letter),
            **self.service.stats(),
            "circuit_breaker": self.breaker.snapshot(),
            "backpressure": {
                "level": self.pressure.level.label,
                "peak_utilization": round(self.pressure.peak_utilization, 4),
                "events": dict(self.pressure.events),
            },
            "delivered_by_topic": dict(self.delivered_by_topic),
            "last_error": self._last_error,
        }
