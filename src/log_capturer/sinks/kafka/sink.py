"""The Kafka sink: confluent-kafka (librdkafka) with delivery-report acknowledgements.

Threads: dispatcher workers call :meth:`KafkaSink.send`, which encodes each
chunk, admits it (circuit breaker, backpressure) and produces it; one poll
thread serves every delivery report, runs retries, parks records in the
dead-letter queue, samples statistics, recreates the producer after a fatal
error, and sends lingering records early when the load is low (adaptive
batching, see :mod:`log_capturer.sinks.kafka.batching`).
Per-record bookkeeping happens on the poll thread, so it needs no locks; the
senders hand it work through deques.

A record's fate is always one of:

- delivered: its chunk is acknowledged;
- retried: produced again after a back-off, as often as needed (retriable
  errors; a record that timed out is re-sent at once unless the sink parks
  what times out: ``dlq_config.enabled`` and ``send_on_timeout``), so an
  outage longer than ``timeout`` loses nothing;
- sent to the DLQ topic (rejected permanently, ``dlq_config.enabled`` and
  ``send_on_error``), with the error in headers; if that topic cannot be
  written either, parked in the local store;
- parked in the local store (oversize, invalid manual partition, rejected
  permanently without the DLQ topic, timed out, overflow of a stalled sink,
  open breaker with ``open_action: dlq``, a record the producer refuses with an
  unexpected error), durably, before it counts as acknowledged.

Admission (per chunk, before it is produced): while the circuit breaker is
open, lines wait (or go to the DLQ with ``open_action: dlq``); while it is
half-open, only trial chunks pass; from the critical backpressure level on the
sources are held (:meth:`KafkaSink.accepting`), and a chunk is produced only if
the queue stays within the emergency level with it (check and count are one
step, so concurrent dispatcher threads cannot overfill it). Once the sink is
stalled (nothing acknowledged for ``timeout``), lines waiting at the emergency
level overflow to the local DLQ, and with ``timeout_escalation`` lines waiting
below it too. See :mod:`log_capturer.reliability.backpressure`.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from pydantic import ValidationError

from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk
from log_capturer.reliability.backpressure import Backpressure, Level
from log_capturer.reliability.circuit_breaker import BreakerState, CircuitBreaker
from log_capturer.reliability.dlq import DeadLetterStore, DLQEntry, DLQWriteError
from log_capturer.reliability.dlq.replay import ReplayRecord, describe, produce_replay
from log_capturer.sinks.base import (
    SendFailed,
    SinkComponent,
    SinkContext,
    SinkHealth,
    SinkStartError,
    Status,
    utc_now_iso,
)
from log_capturer.sinks.kafka.batching import LingerPolicy
from log_capturer.sinks.kafka.client import (
    close_producer,
    parks_on_timeout,
    producer_config,
    redacted,
    start_problems,
    tls_file_problems,
)
from log_capturer.sinks.kafka.config import KafkaSinkConfig, TLSConfig
from log_capturer.sinks.kafka.encode import LEVELS, encode_chunk, tally
from log_capturer.sinks.kafka.errors import SIZE_ERRORS, Disposition, classify, error_type
from log_capturer.sinks.kafka.headers import Headers, headers_for
from log_capturer.sinks.kafka.names import SINK_NAME, SINK_TYPE
from log_capturer.sinks.kafka.native import ChunkProducer, NativeUnavailable, Settled
from log_capturer.sinks.kafka.partitioning import InvalidPartition, PartitionChooser
from log_capturer.sinks.kafka.quiet import Repeats, quiet_logger
from log_capturer.sinks.kafka.stats import StatsTracker

log = logging.getLogger(__name__)

HIGH = frozenset({"error", "fatal", "critical"})
NORMAL = frozenset({"warn", "info"})
LOW = frozenset({"debug", "trace"})
RETRY_MAX_DELAY = 30.0
#: Bytes a record adds to its line besides the origin's fields (timestamp, level, keys, quotes):
#: the estimate of a chunk's size before the first chunk was encoded.
ENVELOPE_BYTES = 96
#: Longest the poll thread sleeps in librdkafka; bounds how late a push (adaptive batching) is,
#: and how long one push holds librdkafka's "ignore linger" flag.
POLL_INTERVAL = 0.005
#: A failed local park is tried again after this long (poll thread), or up to this long (senders).
PARK_RETRY = 1.0
PARK_MAX_DELAY = 5.0
#: How long an idle half-open breaker's trial call (a metadata request) may take.
PROBE_TIMEOUT = 5.0

DeliveryCallback = Callable[[KafkaError | None, Message], None]


class _Delivery:
    """One chunk's records in flight. Touched only by the poll thread once produced."""

    __slots__ = ("chunk", "failed", "failing", "nbytes", "remaining", "sink", "started", "topics")

    def __init__(self, sink: KafkaSink, chunk: Chunk, topics: collections.Counter[str]) -> None:
        self.sink = sink
        self.chunk = chunk
        # One extra count is held by the sender until it has produced every record.
        self.remaining = len(chunk.lines) + 1
        self.started = time.monotonic()
        self.topics = topics
        self.failed = 0
        self.nbytes = 0
        #: A delivery failure of this chunk was counted by the circuit breaker.
        self.failing = False

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.remaining -= 1
            if self.remaining == 0:
                self.sink._finished(self)
        else:
            self.sink._failed(self, err, _Record.of(msg), 0)

    def settle(self, n: int) -> None:
        self.remaining -= n
        if self.remaining == 0:
            self.sink._finished(self)


class _Claim(NamedTuple):
    """What a chunk holds in the sink: records, and bytes of encoded records."""

    records: int
    nbytes: int


class _Prepared:
    """An admitted chunk encoded for Kafka: its records, and their size in bytes (what the sink's
    ``queue_max_bytes`` counts)."""

    __slots__ = ("chunk", "headers", "keys", "longest", "nbytes", "partitions", "tallied", "topics", "values")

    def __init__(self, sink: KafkaSink, chunk: Chunk) -> None:
        self.chunk = chunk
        self.topics = list(map(sink._topic_of.__getitem__, chunk.levels))
        self.keys = sink._keys(chunk)
        self.values = encode_chunk(chunk, sink._key_field)
        # Per topic: records, bytes and the size histogram's buckets, in one pass.
        self.tallied, self.longest = tally(self.topics, self.values, sink._size_bounds)
        self.nbytes = sum(row[1] for row in self.tallied.values())
        self.partitions = sink._partitions(self.topics, self.keys) if sink._chooser.explicit else None
        self.headers = sink._chunk_headers(chunk) if sink.config.headers else None


@dataclass
class _Record:
    topic: str
    value: bytes
    key: str | bytes | None
    partition: int = -1
    headers: Headers | None = None

    @classmethod
    def of(cls, msg: Message) -> _Record:
        part = msg.partition()
        return cls(
            msg.topic() or "",
            msg.value() or b"",
            msg.key(),
            part if part is not None and part >= 0 else -1,
            _header_list(msg.headers()),
        )


@dataclass(order=True)
class _Retry:
    due: float
    seq: int
    delivery: _Delivery = field(compare=False)
    record: _Record = field(compare=False)
    attempt: int = field(compare=False)
    #: Set when the record is to be parked: the DLQ reason and the error text.
    park_reason: str = field(compare=False, default="")
    error: str = field(compare=False, default="")


class KafkaSink:
    sink_type = SINK_TYPE

    def __init__(
        self,
        config: KafkaSinkConfig,
        metrics: Metrics,
        dlq: DeadLetterStore | None,
        name: str = SINK_NAME,
    ) -> None:
        self.config = config
        self.name = name
        self.metrics = metrics
        self.dlq = dlq
        self._conf = producer_config(config)
        self._conf.update(
            {
                "error_cb": self._on_error,
                "stats_cb": self._on_stats,
                "statistics.interval.ms": 2000,
                # librdkafka's own log lines go through logging, as structured records; a
                # refused connection, repeated at every reconnect, is logged once per 10 s.
                "logger": quiet_logger("librdkafka"),
            }
        )
        self._producer: Producer | None = None
        #: The chunk producer (``native_producer``): the usual chunks go through it, delivery
        #: reports counted in C; the confluent-kafka producer above serves everything else.
        self._native: ChunkProducer | None = None
        #: Chunk producers replaced after a fatal error, polled until they hold nothing.
        self._retired: list[ChunkProducer] = []
        self._fatal_native = False
        self._native_conf: dict[str, Any] = {}
        self._topic_of = _routing(config)
        part = config.partitioning
        self._key_field = part.key_field if part.enabled else None
        self._chooser = PartitionChooser(part.strategy if part.enabled else "hash", self._partition_count)
        self._size_bounds = tuple(float(b) for b in metrics.kafka_message_size.bounds)
        dlq_cfg = config.dlq_config
        # dlq_config.enabled: false turns the sink's dead-letter handling off as a whole: no DLQ
        # topic, and records that time out are re-sent in place instead of parked. Records Kafka
        # rejects permanently still go to the agent's local store (nothing is dropped).
        self._dlq_topic = dlq_cfg.topic if dlq_cfg.enabled and dlq_cfg.send_on_error else ""
        self._park_on_timeout = parks_on_timeout(config) and dlq is not None
        cb = config.circuit_breaker
        self.breaker = CircuitBreaker(
            cb.failure_threshold,
            cb.success_threshold,
            cb.timeout,
            cb.half_open_max_calls,
            on_change=self._breaker_changed,
            enabled=cb.enabled,
        )
        self.pressure = Backpressure(config.backpressure_config, metrics, name, self.sink_type)
        pc = config.backpressure_config
        self._critical = pc.queue_critical_threshold
        self._emergency = pc.queue_emergency_threshold
        #: Records, and bytes of encoded records, the sink may hold before new chunks wait
        #: (the emergency level; the sources already wait from the critical level on).
        self._room = pc.queue_emergency_threshold * config.queue_size
        self._room_bytes = pc.queue_emergency_threshold * config.queue_max_bytes
        #: Lines waiting at the emergency level overflow to the DLQ once the sink is stalled;
        #: a threshold of 1.0 turns that off (they wait at the queue's capacity).
        self._overflows = pc.enabled and pc.queue_emergency_threshold < 1.0
        #: The level while chunks wait for room (the poll thread's gauges keep it, so that one wait
        #: is one event), and how many senders wait for room.
        self._waiting_level = Level.EMERGENCY if self._overflows else Level.CRITICAL
        self._waiting = 0
        #: Bytes encoding added per record to the last chunk (0: none encoded yet), see _claim().
        self._record_overhead = 0.0
        self._wait_steps = self.pressure.wait_steps()
        self._settle: collections.deque[tuple[_Delivery, int]] = collections.deque()
        self._resend: collections.deque[tuple[_Delivery, _Record]] = collections.deque()
        self._retries: list[_Retry] = []
        self._solo: collections.deque[_Retry] = collections.deque()
        self._solo_producer: Producer | None = None
        #: Records to send to the DLQ topic, and records to park in the local store (poll thread).
        self._to_dlq_topic: collections.deque[_Retry] = collections.deque()
        self._parking: list[_Retry] = []
        self._park_retry_at = 0.0
        self._seq = itertools.count()
        self._space = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_requested = False
        self._linger = LingerPolicy(config.adaptive_batching, POLL_INTERVAL)
        self._stats = StatsTracker(metrics, self.sink_type, config.compression)
        self._send_lock = threading.Lock()
        # Counters: the senders' are written under _send_lock, the others by the poll thread only.
        self.produced = 0
        #: Records whose produce() calls have returned (adaptive batching compares it with finished).
        self.handed = 0
        self.bytes_produced = 0
        self.bytes_by_topic: dict[str, int] = collections.defaultdict(int)
        self.count_by_topic: dict[str, int] = collections.defaultdict(int)
        self.finished = 0  # poll thread
        self.bytes_finished = 0  # poll thread
        self.delivered = 0  # poll thread
        self.parked = 0
        self.sent_to_dlq_topic = 0  # poll thread
        self.overflowed = 0
        self.retried = 0  # poll thread
        self.recreated = 0  # poll thread
        self.delivered_by_topic: dict[str, int] = {}  # poll thread
        self._last_error = ""
        #: An unexpected exception the poll thread survived (a bug), for /health; '' once it runs cleanly.
        self._poll_error = ""
        self._dlq_error = ""
        self._dlq_error_logged = 0.0
        self._last_progress = time.monotonic()
        self._all_down = False
        self._fatal = ""
        self._repeats = Repeats()
        self._probing = threading.Event()
        self._probe_thread: threading.Thread | None = None
        #: Set by stop() before the producers are closed: their purge reports change nothing.
        self._closing = False

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._check_files()
        conf = self._conf
        self._native_conf = {k: v for k, v in conf.items() if k not in ("error_cb", "stats_cb", "logger")}
        try:
            if self.config.native_producer:
                self._native = self._new_native()
                # Statistics come from the chunk producer, which carries the traffic.
                conf = {k: v for k, v in conf.items() if k not in ("stats_cb", "statistics.interval.ms")}
                self._conf = conf
            self._producer = Producer(conf)
        except NativeUnavailable as exc:
            raise SinkStartError(f"sinks.kafka.native_producer: {exc}") from exc
        except KafkaException as exc:
            raise SinkStartError(f"sinks.kafka: the producer rejected its configuration: {exc}") from exc
        for b in self.config.brokers:
            self.metrics.kafka_connection_status.labels(b, self.sink_type).set(0)
        self.metrics.kafka_circuit_breaker_state.labels(self.sink_type).set(int(BreakerState.CLOSED))
        self._last_progress = time.monotonic()
        self._thread = threading.Thread(target=self._poll_loop, name=f"{self.name}-poll", daemon=True)
        self._thread.start()
        log.info(
            "Kafka sink initialized",
            extra={"sink": self.name, "producer_config": redacted(producer_config(self.config))},
        )

    def _new_native(self) -> ChunkProducer:
        return ChunkProducer(
            self._native_conf,
            error_cb=functools.partial(self._on_error, native=True),
            stats_cb=self._on_stats,
            logger=quiet_logger("librdkafka"),
        )

    def _check_files(self) -> None:
        problems = tls_file_problems(self.config.tls)
        if problems:
            raise SinkStartError("\n".join(problems))

    @property
    def outstanding(self) -> int:
        return self.produced - self.finished

    @property
    def utilization(self) -> float:
        """Share of the sink's queue in use: records, or bytes, whichever is fuller."""
        cfg = self.config
        by_count = self.outstanding / cfg.queue_size
        by_bytes = (self.bytes_produced - self.bytes_finished) / cfg.queue_max_bytes
        return by_count if by_count > by_bytes else by_bytes

    def idle(self) -> None:
        """The dispatcher has nothing more queued: what lingers may leave now (adaptive batching)."""
        if self._linger.enabled:
            with self._send_lock:
                self._linger.idle(self.handed)

    def flush(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.outstanding > 0 and time.monotonic() < deadline:
            self._flush_requested = True
            time.sleep(0.01)
        return self.outstanding

    def stop(self, timeout: float) -> None:
        remaining = self.flush(timeout)
        if remaining:
            log.warning(
                "Kafka sink stopping with %d lines unacknowledged; they were not checkpointed "
                "and will be read again on restart",
                remaining,
                extra={"sink": self.name, "unacknowledged": remaining},
            )
        self._stop.set()
        self._space.set()
        if self._thread is not None:
            self._thread.join(10)
            if self._thread.is_alive():
                log.error("Kafka sink poll thread did not stop within 10s", extra={"sink": self.name})
                return
        probe = self._probe_thread
        if probe is not None:
            probe.join(PROBE_TIMEOUT + 1)
        self._close_producers()

    def _close_producers(self) -> None:
        """Close the producers (see ``close_producer``: the agent crashed with SIGSEGV after a
        clean stop with a wrong SASL password). What they still hold was not acknowledged, so it
        was not checkpointed and is read again on restart: their purge reports change nothing;
        a record acknowledged before the purge is checkpointed as usual."""
        self._closing = True
        for chunks in (self._native, *self._retired):
            if chunks is not None:
                chunks.close()
        self._retired = []
        for producer in (self._producer, self._solo_producer):
            if producer is None:
                continue
            try:
                close_producer(producer)
            except (KafkaException, RuntimeError) as exc:
                log.warning("closing the Kafka producer: %s", exc, extra={"sink": self.name})
        self._solo_producer = None

    # -- admission (dispatcher threads) --------------------------------------------------------
    def send(self, chunks: list[Chunk]) -> None:
        """Take each chunk in turn: admit it (wait for room, or overflow), encode it, hand it over.
        Raises :class:`SendFailed` only when a chunk cannot even be encoded (a bug): the chunks
        before it are taken, it and the rest are untouched, so the dispatcher retries only them."""
        for i, chunk in enumerate(chunks):
            claim = self._claim(chunk)
            if not self._admit(chunks, i, claim):
                return  # parked (overflow) or stopping: nothing more to produce from this batch
            try:
                prepared = _Prepared(self, chunk)
            except Exception as exc:
                self._release(claim)
                raise SendFailed(i, exc) from exc
            self._true_up(claim, prepared)
            self._hand_over(prepared)

    def _claim(self, chunk: Chunk) -> _Claim:
        """What ``chunk`` will hold in the sink: its records, and their bytes as encoded, estimated
        before it is encoded (its text plus the bytes encoding added per record to the last chunk
        of its origin's shape), so that a chunk waiting for room holds no encoded copy."""
        n = len(chunk.lines)
        overhead = self._record_overhead or len(chunk.origin.encoded) + ENVELOPE_BYTES
        return _Claim(n, int(chunk.text_bytes + n * overhead))

    def accepting(self) -> bool:
        """May the sources hand over more lines now? False from the critical level on, and while
        the breaker is open with ``open_action: wait``, unless the waiting lines may overflow."""
        breaker = self.breaker
        util = self.utilization
        if breaker.closed:
            if not self.pressure.enabled or util < self._critical:
                return True
        elif breaker.state is BreakerState.HALF_OPEN or self.config.circuit_breaker.open_action == "dlq":
            return True
        return self._may_overflow(time.monotonic(), self._overflows and util >= self._emergency)

    def _admit(self, chunks: list[Chunk], i: int, claim: _Claim) -> bool:
        """Wait until ``chunks[i]`` may be produced and count it as produced (True), or park
        ``chunks[i:]`` / stop (False)."""
        breaker = self.breaker
        if breaker.closed and self._reserve(claim, self.pressure.enabled):
            if self.pressure.level is not Level.NORMAL:
                self.pressure.observe(self.utilization)
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

    def _wait_admission(self, chunks: list[Chunk], i: int, claim: _Claim, waiting: list[bool]) -> bool:
        breaker = self.breaker
        steps = self._wait_steps
        step = 0
        since = time.monotonic()
        while not self._stop.is_set():
            self._space.clear()
            state = breaker.state
            if state is BreakerState.CLOSED:
                if self._reserve(claim, self.pressure.enabled):
                    self.pressure.observe(self.utilization)
                    return True
                # The chunk would take the queue past the emergency level: it waits for room, and
                # overflows to the DLQ once Kafka has acknowledged nothing for ``timeout``.
                self._count_waiting(waiting, True)
                self.pressure.observe(self.utilization, at_least=self._waiting_level)
                why = f"the sink queue is {self.utilization:.0%} full"
                if step == 0:
                    # Nothing more can be produced until records are acknowledged, so what
                    # lingers cannot grow into bigger batches: it may leave now (adaptive batching).
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
                if self.config.circuit_breaker.open_action == "dlq" and self._park_chunks(
                    chunks[i:], "circuit_open", f"not sent: {why} (circuit_breaker.open_action: dlq)"
                ):
                    return False
            now = time.monotonic()
            at_emergency = self._overflows and not self._fits(claim)
            if self._may_overflow(now, at_emergency):
                reason = "backpressure" if at_emergency or state is BreakerState.CLOSED else "circuit_open"
                text = (
                    f"overflow after waiting {now - since:.1f}s: {why}, and Kafka acknowledged nothing "
                    f"for {now - self._last_progress:.1f}s"
                )
                if self._park_chunks(chunks[i:], reason, text):
                    return False
            self._space.wait(steps[min(step, len(steps) - 1)])
            step += 1
        return False

    def _reserve(self, claim: _Claim, limited: bool, trial: bool = False) -> bool:
        """Count the chunk's records and bytes as produced (before they are: a delivery report may
        come before ``_hand_over`` returns) if, with them, the sink stays within the emergency
        level, or it holds nothing (a chunk larger than the room goes alone), or not ``limited``.
        A trial (half-open breaker) also takes one of the breaker's permits. Check and count are
        one step under the lock, so dispatcher threads cannot together push the queue past it."""
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

    def _fits(self, claim: _Claim) -> bool:
        """Would the sink stay within the emergency level with this chunk (or hold nothing)?"""
        held = self.outstanding
        return held <= 0 or (
            held + claim.records <= self._room
            and self.bytes_produced - self.bytes_finished + claim.nbytes <= self._room_bytes
        )

    def _release(self, claim: _Claim) -> None:
        """Give back a claim whose chunk was not produced (it could not be encoded)."""
        with self._send_lock:
            self.produced -= claim.records
            self.bytes_produced -= claim.nbytes

    def _true_up(self, claim: _Claim, prepared: _Prepared) -> None:
        """The chunk is encoded: count its exact bytes instead of the estimate, and keep what
        encoding added per record for the next estimate."""
        with self._send_lock:
            self.bytes_produced += prepared.nbytes - claim.nbytes
        if claim.records:
            self._record_overhead = (prepared.nbytes - prepared.chunk.text_bytes) / claim.records

    def _may_overflow(self, now: float, at_emergency: bool) -> bool:
        """Waiting lines go to the DLQ once the sink is stalled (Kafka acknowledged nothing for
        ``timeout`` while records waited) and either they wait at the emergency level or
        ``timeout_escalation`` is on."""
        if self.breaker.closed and self.outstanding <= 0:
            return False
        if now - self._last_progress < self.config.timeout:
            return False
        bp = self.config.backpressure_config
        return bp.enabled and (bp.timeout_escalation or at_emergency)

    def _park_chunks(self, chunks: list[Chunk], reason: str, text: str, *, overflow: bool = True) -> bool:
        """Park every record of ``chunks`` in the local DLQ and acknowledge them. False if it refused.
        ``overflow``: lines that waited for room or for the breaker (counted in ``overflowed``)."""
        entries: list[DLQEntry] = []
        for chunk in chunks:
            entries += self._dead_entries(chunk, reason, text)
        if not self._park_local(entries, wait=False, overflow=overflow):
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
                chunk.levels = [""] * n  # not analysed: no level, default topic
                chunk.keys = None
            topics = list(map(self._topic_of.__getitem__, chunk.levels))
            keys = self._keys(chunk)
            values = encode_chunk(chunk, self._key_field)
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
                    topic=self.config.topic,
                    key=origin.labels.get(self._key_field or "", origin.source_id),
                )
                for line in chunk.lines
            ]
        return [
            self._entry(value, topics[j], keys[j] if keys is not None else None, reason, text)
            for j, value in enumerate(values)
        ]

    def dead_letter(self, chunks: list[Chunk], reason: str, text: str) -> bool:
        """Park ``chunks`` whole (the dispatcher's last resort: analysis failed, or ``send`` raised)."""
        return self._park_chunks(chunks, reason, text, overflow=False)

    # -- sending (dispatcher threads) ----------------------------------------------------------
    def _hand_over(self, prepared: _Prepared) -> None:
        """Produce an admitted chunk. Never raises: a record an unexpected error (a bug) keeps from
        being handed over is retried by the poll thread, so the chunk's count always settles."""
        assert self._producer is not None, "start() first"
        chunk = prepared.chunk
        topics, values, keys = prepared.topics, prepared.values, prepared.keys
        tallied = prepared.tallied
        topic_counts = collections.Counter({t: row[0] for t, row in tallied.items()})
        delivery = _Delivery(self, chunk, topic_counts)
        delivery.nbytes = prepared.nbytes
        partitions = prepared.partitions
        headers = prepared.headers
        parked: list[DLQEntry] = []
        native = self._native if headers is None else None
        if native is not None:
            parked = self._send_native(native, delivery, prepared)
        elif partitions is None and headers is None and prepared.longest <= self.config.max_message_bytes:
            # The usual chunk: nothing to park, librdkafka's partitioner, no headers.
            produce = self._producer.produce
            cb = delivery.on_delivery
            line_keys = keys if keys is not None else [None] * len(values)
            for i, (topic, value, key) in enumerate(zip(topics, values, line_keys, strict=True)):
                try:
                    produce(topic, value, key, on_delivery=cb)
                except BufferError:
                    self._produce_blocking(_Record(topic, value, key), cb)
                except KafkaException:
                    self._resend.append((delivery, _Record(topic, value, key)))
                except Exception as exc:
                    self._resend_rest(delivery, prepared, i, exc, parked)
                    break
        else:
            self._send_each(delivery, prepared, parked)
        with self._send_lock:
            for topic, row in tallied.items():
                self.bytes_by_topic[topic] += row[1]
                self.count_by_topic[topic] += row[0]
            self.handed += len(values)
        sizes = self.metrics.kafka_message_size
        for topic, row in tallied.items():
            sizes.observe_buckets((topic,), row[2:], row[0], row[1])
        if parked and not self._park_local(parked, wait=True):
            # Stopping while the DLQ refuses writes: these lines stay unacknowledged, so the
            # chunk is never checkpointed and a restart reads it again.
            return
        for e in parked:
            topic_counts[e.topic] -= 1
        self._settle.append((delivery, len(parked)))

    def _send_each(self, delivery: _Delivery, prepared: _Prepared, parked: list[DLQEntry]) -> None:
        """Produce record by record (headers, explicit partitions, or records to park)."""
        assert self._producer is not None
        produce = self._producer.produce
        cb = delivery.on_delivery
        for i, topic, value, key, part, hdrs in self._producible(prepared, parked):
            try:
                if part < 0 and hdrs is None:
                    produce(topic, value, key, on_delivery=cb)
                else:
                    produce(topic, value, key, part, on_delivery=cb, headers=hdrs)
            except BufferError:
                self._produce_blocking(_Record(topic, value, key, part, hdrs), cb)
            except KafkaException:
                # The producer is being replaced after a fatal error: the poll thread re-sends it.
                self._resend.append((delivery, _Record(topic, value, key, part, hdrs)))
            except Exception as exc:
                self._resend_rest(delivery, prepared, i, exc, parked)
                return

    def _producible(
        self, prepared: _Prepared, parked: list[DLQEntry], start: int = 0
    ) -> Iterator[tuple[int, str, bytes, str | None, int, Headers | None]]:
        """(index, topic, value, key, partition, headers) of each record of ``prepared`` from
        ``start`` on that may be produced; those to park instead (larger than max_message_bytes,
        an invalid manual partition) are added to ``parked``."""
        topics, keys, partitions, headers = (
            prepared.topics,
            prepared.keys,
            prepared.partitions,
            prepared.headers,
        )
        levels = prepared.chunk.levels
        values = prepared.values
        for i in range(start, len(values)):
            value, topic = values[i], topics[i]
            key = keys[i] if keys is not None else None
            part = self._partition_or_park(
                value, topic, key, partitions[i] if partitions is not None else -1, parked
            )
            if part is not None:
                yield i, topic, value, key, part, headers[levels[i]] if headers is not None else None

    def _resend_rest(
        self, delivery: _Delivery, prepared: _Prepared, start: int, exc: Exception, parked: list[DLQEntry]
    ) -> None:
        """An unexpected error (a bug) stopped the hand-over at record ``start``: that record and
        the rest go to the poll thread's retries (each is parked there if it fails again)."""
        self._unexpected("hand_over_failed", exc)
        for _, topic, value, key, part, hdrs in self._producible(prepared, parked, start):
            self._resend.append((delivery, _Record(topic, value, key, part, hdrs)))

    def _unexpected(self, what: str, exc: BaseException) -> None:
        """Count and log an exception that is a bug, not a delivery problem."""
        self.metrics.errors.labels("kafka", what).inc()
        text = f"{what}: {type(exc).__name__}: {exc}"
        self._note_error(text)
        if self._repeats.admit(text) is not None:
            log.error("Kafka sink: unexpected error (%s)", text, exc_info=exc, extra={"sink": self.name})

    def _partition_or_park(
        self,
        value: bytes,
        topic: str,
        key: str | None,
        partition: int | InvalidPartition,
        parked: list[DLQEntry],
    ) -> int | None:
        """The record's partition (-1: librdkafka's partitioner), or None when it is to be parked
        instead (larger than max_message_bytes, invalid manual partition): added to ``parked``."""
        max_bytes = self.config.max_message_bytes
        if len(value) > max_bytes:
            msg = f"record of {len(value)} bytes exceeds max_message_bytes={max_bytes}"
            parked.append(self._entry(value, topic, key, "message_too_large", msg))
            return None
        if isinstance(partition, InvalidPartition):
            parked.append(self._entry(value, topic, key, "invalid_partition", str(partition)))
            return None
        return partition

    def _send_native(self, native: ChunkProducer, delivery: _Delivery, prepared: _Prepared) -> list[DLQEntry]:
        """Hand a chunk to the chunk producer; returns the records to park instead."""
        topics, values, keys, partitions = (
            prepared.topics,
            prepared.values,
            prepared.keys,
            prepared.partitions,
        )
        parked: list[DLQEntry] = []
        parts: list[int] | None = None
        if partitions is not None or prepared.longest > self.config.max_message_bytes:
            # Leave out what is parked instead (oversize, invalid manual partition).
            keep_t: list[str] = []
            keep_v: list[bytes] = []
            keep_k: list[str | None] = []
            keep_p: list[int] = []
            for _, topic, value, key, part, _ in self._producible(prepared, parked):
                keep_t.append(topic)
                keep_v.append(value)
                keep_k.append(key)
                keep_p.append(part)
            topics, values = keep_t, keep_v
            keys = keep_k if keys is not None else None
            parts = keep_p if partitions is not None else None
        try:
            native.produce_chunk(delivery, topics, values, keys, parts)
        except RuntimeError:
            pass  # closing (stop): these records stay unacknowledged and are read again on restart
        except Exception as exc:
            # Refused before any record was handed over (a bug): the poll thread sends them.
            self._unexpected("hand_over_failed", exc)
            for i, value in enumerate(values):
                key = keys[i] if keys is not None else None
                self._resend.append((delivery, _Record(topics[i], value, key, parts[i] if parts else -1)))
        return parked

    def _keys(self, chunk: Chunk) -> list[str | None] | None:
        """Message key of each record: label, else the line's key field, else the source id."""
        kf = self._key_field
        if kf is None:
            return None
        origin = chunk.origin
        default = origin.labels.get(kf, origin.source_id)
        line_keys = chunk.keys
        if line_keys is None:
            return [default] * len(chunk.lines)
        if all(line_keys):  # every line had a (non-empty) key: truthiness only, no comparisons
            return line_keys
        return [default if k is None else k for k in line_keys]

    def _partitions(
        self, topics: list[str], keys: list[str | None] | None
    ) -> list[int | InvalidPartition] | None:
        chooser = self._chooser
        if chooser.strategy == "round-robin":
            out: list[int | InvalidPartition] = [-1] * len(topics)
            by_topic: dict[str, list[int]] = collections.defaultdict(list)
            for i, t in enumerate(topics):
                by_topic[t].append(i)
            for t, idx in by_topic.items():
                parts = chooser.round_robin(t, len(idx))
                if parts is not None:
                    for i, p in zip(idx, parts, strict=True):
                        out[i] = p
            return out
        result: list[int | InvalidPartition] = []
        for i, t in enumerate(topics):
            try:
                result.append(chooser.manual(t, keys[i] if keys is not None else None))
            except InvalidPartition as exc:
                result.append(exc)
        return result

    def _partition_count(self, topic: str) -> int | None:
        assert self._producer is not None
        try:
            md = self._producer.list_topics(topic, timeout=5)
        except KafkaException:
            return None
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            return None
        return len(t.partitions)

    def _chunk_headers(self, chunk: Chunk) -> dict[str, Headers]:
        origin = chunk.origin
        names = self.config.headers
        return {lvl: headers_for(names, lvl, origin.source_type, origin.source_id) for lvl in LEVELS}

    def _produce_blocking(self, rec: _Record, cb: DeliveryCallback) -> None:
        """The producer queue is full: wait for delivery reports to make room (backpressure)."""
        while not self._stop.is_set():
            self._space.clear()
            producer = self._producer
            assert producer is not None
            try:
                producer.produce(
                    rec.topic, rec.value, rec.key, rec.partition, on_delivery=cb, headers=rec.headers
                )
                return
            except BufferError:
                self._space.wait(0.1)
            except KafkaException:
                self._space.wait(0.1)

    # -- the local dead-letter store -----------------------------------------------------------
    def _entry(
        self, value: bytes, topic: str, key: str | bytes | None, etype: str, msg: str, retries: int = 0
    ) -> DLQEntry:
        try:
            original: dict[str, Any] = orjson.loads(value)
        except orjson.JSONDecodeError:
            original = {"raw": value.decode("utf-8", "backslashreplace")}
        k = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key
        return DLQEntry(original, msg, etype, self.name, topic=topic, key=k, retry_count=retries)

    def _park_local(self, entries: list[DLQEntry], *, wait: bool, overflow: bool = False) -> bool:
        """Park ``entries`` durably and count them (``parked``; also ``overflowed`` when they are
        lines that overflowed before being produced). With ``wait``, keep trying until the store
        accepts them (the caller's lines wait: backpressure); False if it refused (and, with wait,
        only when the sink is stopping)."""
        if not entries:
            return True
        delay = 0.5
        while True:
            try:
                if self.dlq is None:
                    raise DLQWriteError(0, "the local DLQ is disabled (dispatcher.dlq_config.enabled)")
                self.dlq.park(entries)
                break
            except DLQWriteError as exc:
                self._dlq_failed(exc, len(entries))
                if not wait or self._stop.wait(delay):
                    return False
                delay = min(delay * 2, PARK_MAX_DELAY)
        self._dlq_error = ""
        for e in entries:
            self.metrics.kafka_dlq_messages.labels(e.topic, e.error_type).inc()
        self.metrics.logs_sent.labels(self.sink_type, "dlq").inc(len(entries))
        with self._send_lock:
            self.parked += len(entries)
            if overflow:
                self.overflowed += len(entries)
        first = entries[0]
        log.warning(
            "%d records parked in the local DLQ: %s",
            len(entries),
            first.error_message,
            extra={"sink": self.name, "topic": first.topic, "reason": first.error_type},
        )
        return True

    def _dlq_failed(self, exc: DLQWriteError, count: int) -> None:
        self._dlq_error = str(exc)
        self._note_error(f"DLQ write failed: {exc}")
        now = time.monotonic()
        if now - self._dlq_error_logged >= 10.0:
            self._dlq_error_logged = now
            log.error(
                "cannot park %d records in the local DLQ; they stay unacknowledged and are tried again: %s",
                count,
                exc,
                extra={"sink": self.name},
            )

    # -- poll thread ---------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        """Serve the producers until stop. An unexpected exception (a bug) in one round is counted,
        logged and shown in /health, and the next round runs: this thread settles every chunk."""
        last_second = 0.0
        while not self._stop.is_set():
            try:
                last_second = self._poll_round(last_second)
            except Exception as exc:
                self._poll_error = f"{type(exc).__name__}: {exc}"
                self._unexpected("poll_thread_error", exc)
                self._stop.wait(0.1)
            else:
                self._poll_error = ""
        if self._parking:
            self._park_pending()

    def _poll_round(self, last_second: float) -> float:
        """One round of the poll thread; returns when the per-second work last ran."""
        producer = self._producer
        assert producer is not None
        native = self._native
        try:
            if native is not None:
                self._poll_native(native, producer)
            elif self._linger.push_due(self.finished, time.monotonic()) or self._flush_requested:
                # flush() is poll() that also makes librdkafka ignore linger.ms until it returns.
                self._flush_requested = False
                producer.flush(POLL_INTERVAL)
                self._space.set()
            elif producer.poll(POLL_INTERVAL):
                self._space.set()
        except KafkaException as exc:
            self._on_error(exc.args[0])
        if self._retired:
            self._poll_retired()
        while self._settle:
            delivery, parked = self._settle.popleft()
            delivery.failed += parked
            delivery.settle(parked + 1)
        if self._fatal:
            self._recreate_producer()
        while self._resend:
            delivery, rec = self._resend.popleft()
            heapq.heappush(self._retries, _Retry(0.0, next(self._seq), delivery, rec, 0))
        if self._retries:
            self._run_due_retries()
        if self._solo:
            self._send_solo()
        if self._solo_producer is not None:
            self._poll_solo(self._solo_producer)
        if self._to_dlq_topic:
            self._send_to_dlq_topic()
        now = time.monotonic()
        if self._parking and now >= self._park_retry_at:
            self._park_pending()
        if now - last_second >= 1.0:
            last_second = now
            self._each_second()
        return last_second

    def _poll_native(self, native: ChunkProducer, producer: Producer) -> None:
        """One round of the poll thread with a chunk producer: it sleeps in the chunk producer,
        and serves the confluent-kafka producer (retries, DLQ topic, replays) without waiting."""
        if self._flush_requested:
            self._flush_requested = False
            _, settled = native.flush(POLL_INTERVAL / 2)
            producer.flush(POLL_INTERVAL / 2)
            self._space.set()
        elif self._linger.push_due(self.finished, time.monotonic()):
            _, settled = native.flush(POLL_INTERVAL)
            producer.poll(0)
            self._space.set()
        else:
            served, settled = native.poll(POLL_INTERVAL)
            if producer.poll(0) or served:
                self._space.set()
        if settled:
            self._settled(settled)

    def _settled(self, settled: list[Settled]) -> None:
        """Chunks whose records all have their delivery report: count the delivered ones, and
        handle each failed one as a confluent-kafka report would be (retry, DLQ...)."""
        for delivery, produced, failures in settled:
            d: _Delivery = delivery
            for code, topic, value, key, partition in failures:
                self._failed(d, KafkaError(code), _Record(topic, value, key, partition), 0)
            ok = produced - len(failures)
            if ok:
                d.settle(ok)

    def _poll_retired(self) -> None:
        """Collect the last reports of the chunk producers replaced after a fatal error (purge
        errors: their records are retried), and close each once it holds nothing."""
        keep: list[ChunkProducer] = []
        for old in self._retired:
            _, settled = old.poll(0)
            if settled:
                self._settled(settled)
            if old.live_chunks > 0 or len(old) > 0:
                keep.append(old)
            else:
                old.close()
        self._retired = keep

    def _each_second(self) -> None:
        self._update_gauges()
        if self._all_down and self.outstanding > 0:
            self.breaker.record_failure(f"no broker reachable; last error: {self._last_error}")
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
            and not self._solo
        )

    def _probe(self) -> None:
        """A trial call for an idle half-open breaker, which would otherwise stay half-open (and
        the sink degraded) until new lines come: a metadata request to a broker, at most one at a
        time, once a second. Success counts as a successful trial call, failure opens it again."""
        try:
            producer = self._producer
            if producer is None or not self.breaker.allow():
                return
            try:
                md = producer.list_topics(timeout=PROBE_TIMEOUT)
            except KafkaException as exc:
                self.breaker.record_failure(f"trial metadata request failed: {_explain(exc.args[0])}")
                return
            if md.brokers:
                self.breaker.record_success()
            else:
                self.breaker.record_failure("trial metadata request: the cluster listed no broker")
        finally:
            self._probing.clear()

    def _recreate_producer(self) -> None:
        """A fatal error made the producer unusable: replace it and re-send what it held."""
        old = self._producer
        assert old is not None
        reason = self._fatal
        log.error("Kafka producer hit a fatal error; recreating it: %s", reason, extra={"sink": self.name})
        self.metrics.errors.labels("kafka", "producer_recreated").inc()
        self.recreated += 1
        self._fatal = ""
        if self._fatal_native and self._native is not None:
            # Senders still inside the old one get immediate fatal errors (retried); what it
            # holds comes back purged and is retried too. It is closed once it holds nothing.
            self._fatal_native = False
            retired = self._native
            self._native = self._new_native()
            with contextlib.suppress(RuntimeError):
                retired.purge(in_queue=True, in_flight=True, blocking=True)
            self._retired.append(retired)
            return
        self._producer = Producer(self._conf)
        # Everything the old producer still holds comes back through its delivery reports
        # with a purge error, and is retried on the new producer.
        with contextlib.suppress(KafkaException):
            old.purge(in_queue=True, in_flight=True, blocking=True)
        deadline = time.monotonic() + 10
        while len(old) > 0 and time.monotonic() < deadline:
            with contextlib.suppress(KafkaException):
                old.poll(0.05)

    def _finished(self, d: _Delivery) -> None:
        n = len(d.chunk.lines)
        self.finished += n
        self.bytes_finished += d.nbytes
        delivered = n - d.failed
        self.delivered += delivered
        elapsed = time.monotonic() - d.started
        m = self.metrics
        for topic, count in d.topics.items():
            if count <= 0:
                continue
            self.delivered_by_topic[topic] = self.delivered_by_topic.get(topic, 0) + count
            m.kafka_messages_produced.labels(topic, "success").inc(count)
            m.kafka_batch_size.labels(topic).observe(count)
            m.kafka_batch_send_duration.labels(topic).observe(elapsed)
        m.sink_send_duration.labels(self.sink_type).observe(elapsed)
        if delivered:
            m.logs_sent.labels(self.sink_type, "success").inc(delivered)
            self._all_down = False
            self._last_progress = time.monotonic()
            self.breaker.record_success()
        d.chunk.ack(n)

    def _failed(self, d: _Delivery, err: KafkaError, rec: _Record, attempt: int) -> None:
        if self._closing:
            return  # purged by stop(): unacknowledged, so read again on restart
        disposition = classify(err)
        etype = error_type(err)
        m = self.metrics
        m.kafka_producer_errors.labels(rec.topic, etype).inc()
        m.kafka_messages_produced.labels(rec.topic, "error").inc()
        text = f"{etype}: {err.str()}"
        self._note_error(text)
        now = time.monotonic()
        if disposition is Disposition.PERMANENT:
            if attempt == 0 and err.code() in SIZE_ERRORS:
                # The broker refuses a whole batch when it is too large, small records included:
                # send each record of it once more on its own before deciding it is too large.
                self._solo.append(_Retry(now, next(self._seq), d, rec, 1))
                return
            r = _Retry(now, next(self._seq), d, rec, attempt, park_reason="send_error", error=text)
            if self._dlq_topic:
                self._to_dlq_topic.append(r)
            else:
                self._parking.append(r)
            return
        # Retriable, or timed out: Kafka is not taking records right now.
        if not d.failing or not self.breaker.closed:
            d.failing = True
            self.breaker.record_failure(text)
        if disposition is Disposition.TIMEOUT and self._park_on_timeout:
            self._parking.append(
                _Retry(
                    now,
                    next(self._seq),
                    d,
                    rec,
                    attempt,
                    park_reason="timeout",
                    error=f"not delivered within timeout={self.config.timeout:g}s ({text})",
                )
            )
            return
        delay = 0.0 if disposition is Disposition.TIMEOUT else min(0.25 * 2**attempt, RETRY_MAX_DELAY)
        heapq.heappush(self._retries, _Retry(now + delay, next(self._seq), d, rec, attempt + 1))

    def _run_due_retries(self) -> None:
        producer = self._producer
        assert producer is not None
        breaker = self.breaker
        now = time.monotonic()
        while self._retries and self._retries[0].due <= now:
            # While the breaker is open, retries wait; half-open, each is a trial call.
            if not breaker.closed and not breaker.allow():
                return
            r = heapq.heappop(self._retries)
            rec = r.record
            try:
                producer.produce(
                    rec.topic,
                    rec.value,
                    rec.key,
                    rec.partition,
                    on_delivery=functools.partial(self._retry_report, r),
                    headers=rec.headers,
                )
                self.retried += 1
            except (BufferError, KafkaException):
                r.due = now + 0.05
                heapq.heappush(self._retries, r)
                return
            except Exception as exc:
                self._unproducible(r, exc)

    def _send_solo(self) -> None:
        """Produce the records of the solo lane, each in a batch of its own.

        A second producer with ``batch.num.messages=1`` makes one batch per record
        (pipelined, so this is fast); a record that still fails is too large itself.
        """
        if self._solo_producer is None:
            # No statistics, and no gap-less guarantee: its batches are independent by design.
            skip = ("stats_cb", "statistics.interval.ms", "enable.gapless.guarantee")
            conf = {k: v for k, v in self._conf.items() if k not in skip}
            conf.update({"batch.num.messages": 1, "linger.ms": 0, "client.id": f"{self.name}-solo"})
            self._solo_producer = Producer(conf)
        producer = self._solo_producer
        while self._solo:
            r = self._solo[0]
            rec = r.record
            try:
                producer.produce(
                    rec.topic,
                    rec.value,
                    rec.key,
                    rec.partition,
                    on_delivery=functools.partial(self._retry_report, r),
                    headers=rec.headers,
                )
            except (BufferError, KafkaException):
                return
            except Exception as exc:
                self._unproducible(r, exc)
            else:
                self.retried += 1
            self._solo.popleft()

    def _poll_solo(self, producer: Producer) -> None:
        try:
            producer.poll(0)
        except KafkaException as exc:
            if not exc.args[0].fatal():
                return
            # Drop it; what it held comes back with purge errors and is retried.
            self._solo_producer = None
            with contextlib.suppress(KafkaException):
                producer.purge(in_queue=True, in_flight=True, blocking=True)
            with contextlib.suppress(KafkaException):
                producer.poll(0)

    def _retry_report(self, r: _Retry, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self._last_progress = time.monotonic()
            self.breaker.record_success()
            r.delivery.settle(1)
        else:
            self._failed(r.delivery, err, r.record, r.attempt)

    # -- dead letters (poll thread) ------------------------------------------------------------
    def _send_to_dlq_topic(self) -> None:
        """Records Kafka rejected permanently go to the DLQ topic, with the error in headers."""
        producer = self._producer
        assert producer is not None
        while self._to_dlq_topic:
            r = self._to_dlq_topic[0]
            rec = r.record
            headers: Headers = [
                *(rec.headers or []),
                ("dlq_error_type", r.park_reason.encode()),
                ("dlq_error_message", r.error.encode("utf-8", "backslashreplace")),
                ("dlq_original_topic", rec.topic.encode()),
                ("dlq_failed_sink", self.name.encode()),
                ("dlq_timestamp", utc_now_iso().encode()),
            ]
            try:
                producer.produce(
                    self._dlq_topic,
                    rec.value,
                    rec.key,
                    on_delivery=functools.partial(self._dlq_topic_report, r),
                    headers=headers,
                )
            except (BufferError, KafkaException):
                return
            except Exception as exc:
                self._unproducible(r, exc)
            self._to_dlq_topic.popleft()

    def _dlq_topic_report(self, r: _Retry, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.sent_to_dlq_topic += 1
            self.metrics.kafka_dlq_messages.labels(r.record.topic, r.park_reason).inc()
            self.metrics.logs_sent.labels(self.sink_type, "dlq").inc()
            log.warning(
                "record sent to the DLQ topic %s: %s",
                self._dlq_topic,
                r.error,
                extra={"sink": self.name, "topic": r.record.topic, "reason": r.park_reason},
            )
            self._settle_dead(r)
            return
        r.error = f"{r.error}; the DLQ topic {self._dlq_topic} failed too: {error_type(err)}: {err.str()}"
        self._parking.append(r)

    def _park_pending(self) -> None:
        """Park the records waiting for the local store, in one durable write."""
        pending, self._parking = self._parking, []
        entries = [
            self._entry(r.record.value, r.record.topic, r.record.key, r.park_reason, r.error, r.attempt)
            for r in pending
        ]
        if not self._park_local(entries, wait=False):
            self._parking = pending + self._parking
            self._park_retry_at = time.monotonic() + PARK_RETRY
            return
        for r in pending:
            self._settle_dead(r)

    def _unproducible(self, r: _Retry, exc: Exception) -> None:
        """The producer refused the record with an unexpected error (a bug, not Kafka): park it
        locally with the error, rather than try again for ever."""
        self._unexpected("produce_failed", exc)
        why = f"could not be produced: {type(exc).__name__}: {exc}"
        r.error = f"{r.error}; {why}" if r.error else why
        r.park_reason = r.park_reason or "send_error"
        self._parking.append(r)

    def _settle_dead(self, r: _Retry) -> None:
        r.delivery.failed += 1
        r.delivery.topics[r.record.topic] -= 1
        r.delivery.settle(1)

    # -- replay of parked entries (reprocessor thread) -----------------------------------------
    dlq_topic_key = "kafka_topic"

    def dlq_topic_stats(self) -> dict[str, Any]:
        """``GET /dlq/stats`` ``kafka_topic``: where rejected records go, and how many went."""
        dlq = self.config.dlq_config
        return {"topic": dlq.topic if dlq.enabled else None, "sent_since_start": self.sent_to_dlq_topic}

    def replay_blocker(self) -> str:
        if self._stop.is_set():
            return "the sink is stopping"
        if self._fatal:
            return "the producer is being recreated after a fatal error"
        breaker = self.breaker
        state = breaker.state
        if state is BreakerState.OPEN:
            return "the circuit breaker is open"
        if state is BreakerState.HALF_OPEN and not breaker.allow():
            # With a permit, a replay batch is a trial call (its deliveries may close the breaker).
            return "the circuit breaker is half-open and its trial calls are in flight"
        if self._all_down:
            return "no broker is reachable"
        return ""

    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        """Produce parked records again; entry_id -> None once Kafka acknowledged it, else the error."""
        return produce_replay(
            self._produce_replayed,
            records,
            timeout,
            config=self.config,
            serve=self._serve_replay,
            stopping=self._stop.is_set,
            on_report=self._replayed,
        )

    def _produce_replayed(self, *args: Any, **kwargs: Any) -> None:
        producer = self._producer  # the current one: it is replaced after a fatal error
        assert producer is not None
        producer.produce(*args, **kwargs)

    def _serve_replay(self, timeout: float) -> None:
        """The poll thread serves the reports: send what lingers now, and wait for it."""
        self._flush_requested = True
        self._space.wait(timeout)
        self._space.clear()

    def _replayed(self, rec: ReplayRecord, err: KafkaError | None) -> None:  # poll thread
        if err is None:
            self._last_progress = time.monotonic()
            self.breaker.record_success()
            self.metrics.kafka_messages_produced.labels(rec.topic, "success").inc()
            return
        if classify(err) is not Disposition.PERMANENT:
            self.breaker.record_failure(f"replay: {describe(err)}")
        self.metrics.kafka_producer_errors.labels(rec.topic, error_type(err)).inc()

    # -- librdkafka callbacks (poll thread) ----------------------------------------------------
    def _on_error(self, err: KafkaError, native: bool = False) -> None:
        code = err.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            # Keep the cause (refused connection, failed authentication...) as the message.
            self._all_down = True
        else:
            self._note_error(_explain(err))
        if err.fatal():
            self._fatal = err.str()
            self._fatal_native = native
        self.metrics.errors.labels("kafka", error_type(err)).inc()
        text = _explain(err)
        dropped = self._repeats.admit(text)
        if dropped is not None:
            more = f" (and {dropped} times more in the last {self._repeats.window:g}s)" if dropped else ""
            log.warning("Kafka client error: %s%s", text, more, extra={"sink": self.name})

    def _on_stats(self, raw: str) -> None:
        with self._send_lock:
            counts = list(self.count_by_topic.items())
            sizes = dict(self.bytes_by_topic)
        avg = {t: sizes[t] / n for t, n in counts if n}
        self._stats.update(orjson.loads(raw), avg)
        if self._stats.brokers_up:
            self._all_down = self._stats.all_down

    def _breaker_changed(self, old: BreakerState, new: BreakerState, reason: str) -> None:
        self.metrics.kafka_circuit_breaker_state.labels(self.sink_type).set(int(new))
        self._space.set()
        logger = log.warning if new is BreakerState.OPEN else log.info
        logger(
            "circuit breaker %s -> %s: %s",
            old.label,
            new.label,
            reason,
            extra={"sink": self.name, "circuit_breaker": new.label},
        )

    def _note_error(self, text: str) -> None:
        self._last_error = text

    def _update_gauges(self) -> None:
        producer = self._producer
        assert producer is not None
        # Records only: len() of a librdkafka producer also counts the events waiting for poll()
        # (an unreachable broker's connection errors), so serve those first (this is the poll
        # thread); the chunk producer counts its records itself.
        if producer.poll(0):
            self._space.set()
        queued = len(producer) + (self._native.records if self._native is not None else 0)
        util = self.utilization
        self.pressure.observe(util, at_least=self._waiting_level if self._waiting else Level.NORMAL)
        self.metrics.kafka_queue_size.labels(self.sink_type).set(queued)
        self.metrics.kafka_queue_utilization.labels(self.sink_type).set(min(1.0, util))

    # -- reporting -----------------------------------------------------------------------------
    def health(self) -> SinkHealth:
        status: Status = "healthy"
        message = "OK"
        breaker = self.breaker
        state = breaker.state
        waiting = len(self._retries) + len(self._solo)
        thread = self._thread
        if thread is not None and not thread.is_alive() and not self._stop.is_set():
            status, message = "unhealthy", "the poll thread ended: no delivery is reported any more"
        elif self._fatal:
            status, message = "unhealthy", f"fatal producer error, recreating the producer: {self._fatal}"
        elif self._poll_error:
            status, message = "degraded", f"the poll thread hit an unexpected error: {self._poll_error}"
        elif state is BreakerState.OPEN:
            status = "unhealthy"
            message = (
                f"circuit breaker open ({breaker.last_failure}); trial calls in {breaker.retry_in():.0f}s; "
                f"lines wait{' or go to the DLQ' if self.config.circuit_breaker.open_action == 'dlq' else ''}"
            )
        elif self._all_down:
            status, message = "unhealthy", f"no broker reachable; last error: {self._last_error}"
        elif self._dlq_error:
            status, message = "unhealthy", f"cannot park records in the local DLQ: {self._dlq_error}"
        elif state is BreakerState.HALF_OPEN:
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
                "brokers": dict(self._stats.brokers_up),
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
            "sent_to_dlq_topic": self.sent_to_dlq_topic,
            "overflowed_to_dlq": self.overflowed,
            "retried": self.retried,
            "early_sends": self._linger.pushes,
            "outstanding": self.outstanding,
            "outstanding_bytes": self.bytes_produced - self.bytes_finished,
            "utilization": round(self.utilization, 4),
            "retry_queue": len(self._retries) + len(self._solo),
            "waiting_for_dlq": len(self._parking) + len(self._to_dlq_topic),
            "producer_recreated": self.recreated,
            "chunk_producer": self._native is not None,
            "circuit_breaker": self.breaker.snapshot(),
            "backpressure": {
                "level": self.pressure.level.label,
                "peak_utilization": round(self.pressure.peak_utilization, 4),
                "events": dict(self.pressure.events),
            },
            "compression_ratio": dict(self._stats.compression_ratio),
            "delivered_by_topic": dict(self.delivered_by_topic),
            "last_error": self._last_error,
        }


def _header_list(
    h: dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None,
) -> Headers | None:
    if h is None:
        return None
    return list(h.items()) if isinstance(h, dict) else list(h)


def _routing(config: KafkaSinkConfig) -> dict[str, str]:
    routing = config.priority_routing
    out: dict[str, str] = {}
    for lvl in LEVELS:
        if not routing.enabled:
            out[lvl] = config.topic
        elif lvl in HIGH:
            out[lvl] = routing.high_topic
        elif lvl in NORMAL:
            out[lvl] = routing.normal_topic
        elif lvl in LOW:
            out[lvl] = routing.low_topic
        else:
            out[lvl] = config.topic
    return out


def _explain(err: KafkaError) -> str:
    """librdkafka's message, with the config keys to check for the common connection failures."""
    text: str = err.str()
    code = err.code()
    if code == KafkaError._AUTHENTICATION:
        return f"{text} (check sinks.kafka.auth: mechanism, username, password)"
    if code == KafkaError._SSL or "SSL" in text:
        return f"{text} (check sinks.kafka.tls: ca_file, cert_file/key_file, verify_certificate)"
    return text


def build(config: KafkaSinkConfig, ctx: SinkContext) -> KafkaSink | None:
    return KafkaSink(config, ctx.metrics, ctx.dlq) if config.enabled else None


def _raw_problems(section: Mapping[str, Any]) -> list[str]:
    """The TLS files of a section that failed validation, when its ``tls`` block is valid."""
    if section.get("enabled") is not True:
        return []
    try:
        tls = TLSConfig.model_validate(section.get("tls") or {})
    except ValidationError:
        return []
    return tls_file_problems(tls)


COMPONENT = SinkComponent(
    build=build,
    enabled=lambda config: config.enabled,
    problems=start_problems,
    raw_problems=_raw_problems,
    key_field=lambda config: config.partitioning.key_field if config.partitioning.enabled else None,
)
