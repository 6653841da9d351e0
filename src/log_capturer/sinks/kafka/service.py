"""The Kafka sink's service: the librdkafka producers and the poll thread that serves them.

What the engine (:mod:`log_capturer.engine`) leaves to a sink, for Kafka, by module:

- :mod:`.request`: a chunk's records (topic by level, key, explicit partitions, headers, the
  JSON values), and what is refused before it is produced;
- this module, the producers: the chunk producer in C (:mod:`.native`, ``native_producer``) for
  the chunks (with their headers too), delivery reports counted per chunk; confluent-kafka's
  producer for everything else (retries, the DLQ topic, replays, metadata); a third one, made when
  first needed, that sends a record refused with its batch alone (``batch.num.messages=1``);
- this module, the poll thread: it serves the producers' reports, sends what lingers early when
  the load is low (adaptive batching, :mod:`.batching`), replaces a producer after a fatal error
  (what the old one held comes back purged and is sent again), and runs the engine's round
  (``runner.tick``); librdkafka's error, statistics and log callbacks run there too;
- :mod:`.delivery`: what an error means (retriable, timed out, refused with its batch for the
  batch's size, or refused for good) and the delivery reports turned into the engine's outcomes;
  the DLQ topic (``dlq_config.topic``, headers ``dlq_*``) is the engine's dead-letter output.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource

from log_capturer.engine.contract import Headers, Prepared, Record, Refused, ServiceState
from log_capturer.engine.runner import Attempt
from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk, ChunkGroup
from log_capturer.reliability.dlq.replay import ReplayRecord, produce_replay
from log_capturer.sinks.base import SinkStartError
from log_capturer.sinks.kafka.batching import LingerPolicy
from log_capturer.sinks.kafka.client import close_producer, producer_config, redacted, tls_file_problems
from log_capturer.sinks.kafka.config import KafkaSinkConfig
from log_capturer.sinks.kafka.delivery import Reports, error_type, explain
from log_capturer.sinks.kafka.native import ChunkProducer, NativeUnavailable
from log_capturer.sinks.kafka.partitioning import PartitionCounts
from log_capturer.sinks.kafka.quiet import Repeats, quiet_logger
from log_capturer.sinks.kafka.request import KafkaRequest, RequestBuilder, dead_letter_headers
from log_capturer.sinks.kafka.stats import StatsTracker
from log_capturer.sinks.kafka.transactions import (
    EXIT_ABORTED,
    EXIT_FENCED,
    POSITIONS_TOKEN,
    AbortLog,
    DeadLetterParts,
    Entries,
    Gate,
    PositionsOf,
    PositionsUnreadable,
    Reroute,
    TransactionalReports,
    dead_letter_parts,
    end_process,
    positions_document,
    read_positions,
    refused_line,
    transactional_base,
    transactional_config,
    transactional_id,
)

if TYPE_CHECKING:
    from log_capturer.engine.runner import Delivery, SinkRunner

log = logging.getLogger(__name__)

#: Longest the poll thread sleeps in librdkafka; bounds how late a push (adaptive batching) is,
#: and how long one push holds librdkafka's "ignore linger" flag.
POLL_INTERVAL = 0.005
#: How long the poll thread sleeps in the chunk producer while the sink holds nothing (no record
#: in flight, nothing for the engine to do, the breaker closed). A sender that hands records over
#: meanwhile wakes it (``ChunkProducer.wake``), so an idle agent does not wake 200 times a second
#: for nothing while the first records after a quiet spell are not late.
IDLE_POLL_INTERVAL = 0.1
#: How long a trial metadata request (an idle half-open breaker's) may take.
PROBE_TIMEOUT = 5.0

DeliveryCallback = Callable[[KafkaError | None, Message], None]


class KafkaService:
    """See the module's docstring. Thread use: the dispatcher threads call :meth:`prepare` and
    :meth:`send`; the poll thread everything else that produces, and the engine's round."""

    sink_type = "kafka"

    def __init__(
        self,
        config: KafkaSinkConfig,
        metrics: Metrics,
        name: str,
        sink_type: str,
        state_dir: str | None = None,
        worker: tuple[int, int] | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.name = name
        self.sink_type = sink_type
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
        self._runner: SinkRunner | None = None
        self._producer: Producer | None = None
        #: The chunk producer (``native_producer``): the usual chunks go through it, delivery
        #: reports counted in C; the confluent-kafka producer above serves everything else.
        self._native: ChunkProducer | None = None
        #: Chunk producers replaced after a fatal error, polled until they hold nothing.
        self._retired: list[ChunkProducer] = []
        self._fatal_native = False
        self._native_conf: dict[str, Any] = {}
        self._alone_producer: Producer | None = None
        self.default_destination = config.topic
        size_bounds = tuple(float(b) for b in metrics.kafka_message_size.bounds)
        self.requests = RequestBuilder(config, size_bounds, self._partition_count)
        #: Keyed records partitioned in the chunk producer (librdkafka's murmur2_random, the same
        #: partitions): each partition's records of a chunk are enqueued at once.
        self._hash_in_c = config.partitioning.enabled and config.partitioning.strategy == "hash"
        #: The topics' partition counts for it, looked up by a thread of their own (never waited for).
        self._counts = PartitionCounts(self._partition_count, f"{self.name}-partitions")
        dlq_cfg = config.dlq_config
        # dlq_config.enabled: false turns the sink's dead-letter handling off as a whole: no DLQ
        # topic, and records that time out are re-sent in place instead of parked. Records Kafka
        # rejects permanently still go to the agent's local store (nothing is dropped).
        #: ``delivery: exactly_once`` (:mod:`.transactions`): one transactional producer, the
        #: hand-over through a gate, the positions committed with the lines.
        self.exactly_once = config.delivery == "exactly_once"
        #: Every record's retry, DLQ entry and parked entry comes from its encoded value, so a
        #: chunk's lines may be dropped once prepared (not with exactly-once, which finds the
        #: line of a record the broker refused in an aborted transaction in its chunk).
        self.releases_text = not self.exactly_once
        self.transactional_id = transactional_id(config, worker) if self.exactly_once else ""
        dlq_topic = dlq_cfg.topic if dlq_cfg.enabled and dlq_cfg.send_on_error else ""
        #: Exactly-once: the reports remember the open transaction's first failure.
        self._txn_reports = TransactionalReports(dlq_topic) if self.exactly_once else None
        self.reports = self._txn_reports or Reports(dlq_topic)
        self._gate = Gate()
        #: Where every file resumes: the positions last committed (read at start).
        #: Per kind (files, containers): where every source resumes, read at start.
        self.committed_positions: dict[str, Entries] = {}
        self._positions_of: dict[str, PositionsOf] = {}
        #: The transactional producer (the chunk producer, or confluent-kafka's).
        self._txn: Producer | ChunkProducer | None = None
        self._txn_records = 0
        #: The chunks handed over in the open transaction.
        self._txn_chunks: list[Chunk] = []
        #: Their requests, by id of the chunk (to find a record the broker refused).
        self._txn_requests: dict[int, KafkaRequest] = {}
        #: Lines the broker refused in aborted transactions: to the DLQ topic when read again.
        self._reroute = Reroute([])
        self._txn_opened = 0.0
        self.transactions_committed = 0
        self._commit_seconds = 0.0
        self._last_commit_seconds = 0.0
        self._records_committed = 0
        #: Aborted transactions, this process's and (``abort_log``) those of the runs before.
        self._abort_log = AbortLog(state_dir, self.transactional_id) if self.exactly_once else None
        self.transactions_aborted = 0
        self._last_abort = ""
        txns = metrics.kafka_transactions
        self._m_committed = txns.labels(sink_type, "committed")
        self._m_aborted = txns.labels(sink_type, "aborted")
        self._m_commit_seconds = metrics.kafka_transaction_commit_duration.labels(sink_type)
        self._m_txn_records = metrics.kafka_transaction_records.labels(sink_type)
        self._space = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_requested = False
        #: The poll thread sleeps IDLE_POLL_INTERVAL (set before it checks that it may): a sender
        #: that sees it wakes the thread after handing records over.
        self._dozing = False
        #: Rounds of the poll thread since start (/stats: an idle sink's thread sleeps long ones).
        self.poll_rounds = 0
        self._linger = LingerPolicy(
            config.adaptive_batching, POLL_INTERVAL, config.batch_size, config.batch_timeout
        )
        self._stats = StatsTracker(metrics, sink_type, config.compression)
        self._lock = threading.Lock()
        #: Records whose produce() calls have returned (adaptive batching compares it with the
        #: engine's finished), and per topic the records and bytes handed over (average sizes).
        self.handed = 0
        self.bytes_by_topic: dict[str, int] = collections.defaultdict(int)
        self.count_by_topic: dict[str, int] = collections.defaultdict(int)
        self.recreated = 0  # poll thread
        self._last_error = ""
        #: An unexpected exception the poll thread survived (a bug), for /health; '' once it runs cleanly.
        self._poll_error = ""
        self._fatal = ""
        self._repeats = Repeats()

    @property
    def runner(self) -> SinkRunner:
        runner = self._runner
        assert runner is not None, "start() first"
        return runner

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, runner: SinkRunner) -> None:
        self._runner = runner
        self.reports.bind(runner)
        problems = tls_file_problems(self.config.tls)
        if problems:
            raise SinkStartError("\n".join(problems))
        conf = self._conf
        self._native_conf = {k: v for k, v in conf.items() if k not in ("error_cb", "stats_cb", "logger")}
        if self.exactly_once:
            self._start_transactions(conf)
        else:
            self._start_producers(conf)
        for b in self.config.brokers:
            self.metrics.kafka_connection_status.labels(b, self.sink_type).set(0)
        self._thread = threading.Thread(target=self._poll_loop, name=f"{self.name}-poll", daemon=True)
        self._thread.start()
        log.info(
            "Kafka sink initialized",
            extra={"sink": self.name, "producer_config": redacted(producer_config(self.config))},
        )

    def _start_producers(self, conf: dict[str, Any]) -> None:
        try:
            if self.config.native_producer:
                self._native = self._new_native()
                # codec raw: the chunk producer takes the ASCII lines themselves as the values.
                self.requests.lines_as_values = self.config.encoding.codec == "raw"
                # Statistics come from the chunk producer, which carries the traffic.
                conf = {k: v for k, v in conf.items() if k not in ("stats_cb", "statistics.interval.ms")}
                self._conf = conf
            self._producer = Producer(conf)
        except NativeUnavailable as exc:
            raise SinkStartError(f"sinks.kafka.native_producer: {exc}") from exc
        except KafkaException as exc:
            raise SinkStartError(f"sinks.kafka: the producer rejected its configuration: {exc}") from exc

    def _start_transactions(self, conf: dict[str, Any]) -> None:
        """One transactional producer: the chunk producer (``native_producer``, unless chunks
        carry ``headers``), else confluent-kafka's, which then carries everything.
        ``init_transactions`` fences an older process with this id and aborts what it left open;
        then the committed positions are read, and the first transaction begins."""
        cfg = self.config.exactly_once
        tid = self.transactional_id
        txn_conf = transactional_config(self.config, conf, tid)
        wait = max(self.config.timeout, 10.0)
        txn: Producer | ChunkProducer
        try:
            if self.config.native_producer and not self.config.headers:
                self._native_conf = {
                    k: v for k, v in txn_conf.items() if k not in ("error_cb", "stats_cb", "logger")
                }
                self._native = txn = self._new_native()
                # Metadata and probes only: no record goes through it in this mode.
                self._conf = {
                    k: v for k, v in conf.items() if k not in ("stats_cb", "statistics.interval.ms")
                }
                self._producer = Producer(self._conf)
            else:
                self._conf = txn_conf
                self._producer = txn = Producer(txn_conf)
        except NativeUnavailable as exc:
            self._close_producers()
            raise SinkStartError(f"sinks.kafka.native_producer: {exc}") from exc
        except KafkaException as exc:
            self._close_producers()
            raise SinkStartError(f"sinks.kafka: the producer rejected its configuration: {exc}") from exc
        try:
            txn.init_transactions(wait)
        except KafkaException as exc:
            self._close_producers()
            raise SinkStartError(
                f"sinks.kafka.delivery: exactly_once: init_transactions for transactional.id {tid!r} "
                f"failed: {explain(exc.args[0])}; the brokers must allow transactions (a single broker "
                "needs transaction.state.log.replication.factor=1 and transaction.state.log.min.isr=1)"
            ) from exc
        try:
            self.committed_positions = read_positions(
                txn_conf, cfg.positions_topic, tid, wait, transactional_base(self.config)
            )
            txn.begin_transaction()
        except PositionsUnreadable as exc:
            self._close_producers()
            raise SinkStartError(str(exc)) from exc
        except KafkaException as exc:
            self._close_producers()
            raise SinkStartError(f"sinks.kafka: begin_transaction: {explain(exc.args[0])}") from exc
        self._txn = txn
        self._txn_opened = time.monotonic()
        if self._abort_log is not None:
            before, self._last_abort = self._abort_log.load()
            if before:
                self._m_aborted.inc(before)
                self.transactions_aborted = before
            self._reroute = Reroute(self._abort_log.refused())
            if self._reroute:
                log.warning(
                    "exactly-once: %d line(s) the broker refused in an aborted transaction go to "
                    "the DLQ topic when read again",
                    len(self._reroute.entries),
                    extra={"sink": self.name},
                )
        log.info(
            "exactly-once delivery: transactional.id %s, %d file and %d container positions committed in %s",
            tid,
            len(self.committed_positions.get("files", {})),
            len(self.committed_positions.get("containers", {})),
            cfg.positions_topic,
            extra={"sink": self.name},
        )

    def commit_positions_of(self, positions: PositionsOf, kind: str = "files") -> None:
        """Exactly-once: ``positions()`` gives the files' acknowledged positions at each commit."""
        self._positions_of[kind] = positions

    def _new_native(self) -> ChunkProducer:
        return ChunkProducer(
            self._native_conf,
            error_cb=functools.partial(self._on_error, native=True),
            stats_cb=self._on_stats,
            logger=quiet_logger("librdkafka"),
        )

    def stop(self) -> None:
        self._stop.set()
        self._space.set()
        self._wake_dozing()
        self._counts.stop()
        if self._thread is not None:
            self._thread.join(10)
            if self._thread.is_alive():
                log.error("Kafka sink poll thread did not stop within 10s", extra={"sink": self.name})
                return
        if self.exactly_once and self._producer is not None and self._runner is not None:
            # What was acknowledged is committed with its positions; if that fails, nothing of the
            # open transaction is visible and the next start reads it again.
            self._commit(final=True)
        self._close_producers()

    def _close_producers(self) -> None:
        """Close the producers (see ``close_producer``: the agent crashed with SIGSEGV after a
        clean stop with a wrong SASL password). What they still hold was not acknowledged, so it
        was not checkpointed and is read again on restart: their purge reports change nothing
        (the engine is closing); a record acknowledged before the purge is checkpointed as usual."""
        for chunks in (self._native, *self._retired):
            if chunks is not None:
                chunks.close()
        self._retired = []
        for producer in (self._producer, self._alone_producer):
            if producer is None:
                continue
            try:
                close_producer(producer)
            except (KafkaException, RuntimeError) as exc:
                log.warning("closing the Kafka producer: %s", exc, extra={"sink": self.name})
        self._alone_producer = None

    def idle(self) -> None:
        """What lingers may leave now (adaptive batching): when that makes a push due, the poll
        thread is woken to send it at once (with the chunk producer; else within a poll)."""
        if self._linger.enabled:
            with self._lock:
                due = self._linger.idle(self.handed)
            native = self._native
            if due and native is not None:
                with contextlib.suppress(RuntimeError):  # closed (stopping)
                    native.wake()

    def flush_soon(self) -> None:
        self._flush_requested = True
        self._wake_dozing()

    def _wake_dozing(self) -> None:
        """End the poll thread's idle sleep, if it is in one (any thread)."""
        native = self._native
        if self._dozing and native is not None:
            with contextlib.suppress(RuntimeError):  # closed (stopping)
                native.wake()

    # -- records (dispatcher threads) ----------------------------------------------------------
    def prepare(self, chunk: Chunk) -> KafkaRequest:
        return self.requests.build(chunk)

    @property
    def grouping(self) -> bool:
        """Small chunks go as one request (:class:`~log_capturer.engine.contract.Grouping`), but
        not with exactly-once (a commit waits for every admitted record, and the re-routing of
        refused lines goes by chunk), per-origin headers or per-chunk partitions."""
        return not self.exactly_once and self.requests.groups

    def prepare_many(self, group: ChunkGroup) -> KafkaRequest | None:
        return self.requests.build_many(group)

    def records_of(self, chunk: Chunk) -> list[Record]:
        return self.requests.records_of(chunk)

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

    # -- hand-over (dispatcher threads) --------------------------------------------------------
    def send(self, prepared: Prepared, delivery: Delivery) -> list[Refused]:
        """Produce a chunk's records. A record an unexpected error (a bug) keeps from being
        handed over goes to the engine's retries, so the chunk's count always settles."""
        assert isinstance(prepared, KafkaRequest)
        assert self._producer is not None, "start() first"
        values = prepared.values
        refused: list[Refused] = []
        if self.exactly_once:
            self._gate.enter(len(delivery.chunk.lines))
            dead = 0
            try:
                if self._reroute:
                    # Lines the broker refused in an aborted transaction: to the DLQ topic now.
                    prepared.refuse = self._reroute.match(delivery.chunk) or None
                self._send_producer(prepared, delivery, refused)
                if refused and self.reports.dlq_topic:
                    dead = self._dead_letter_in_txn(delivery, refused)
                    refused = []
            finally:
                with self._lock:
                    self._txn_records += len(values) + dead
                    self._txn_chunks.append(delivery.chunk)
                    self._txn_requests[id(delivery.chunk)] = prepared
                self._gate.leave()
        else:
            self._send_producer(prepared, delivery, refused)
        tallied = prepared.tallied
        with self._lock:
            for topic, row in tallied.items():
                self.bytes_by_topic[topic] += row[1]
                self.count_by_topic[topic] += row[0]
            self.handed += len(values)
        if self._dozing:
            # (The engine counted these records before this call: a poll thread that set the flag
            # after this check saw them, and does not doze.)
            self._wake_dozing()
        sizes = self.metrics.kafka_message_size
        for topic, row in tallied.items():
            sizes.observe_buckets((topic,), row[2:], row[0], row[1])
        return refused

    def _send_producer(self, prepared: KafkaRequest, delivery: Delivery, refused: list[Refused]) -> None:
        assert self._producer is not None
        native = self._native
        if native is not None:
            self._send_native(native, delivery, prepared, refused)
            return
        topics, values, keys = prepared.topics, prepared.record_values(), prepared.keys
        if (
            prepared.partitions is None
            and prepared.headers is None
            and prepared.refuse is None
            and prepared.longest <= self.config.max_message_bytes
        ):
            # The usual chunk: nothing to refuse, librdkafka's partitioner, no headers.
            produce = self._producer.produce
            cb = functools.partial(self.reports.delivery, delivery)
            line_keys = keys if keys is not None else [None] * len(values)
            for i, (topic, value, key) in enumerate(zip(topics, values, line_keys, strict=True)):
                try:
                    produce(topic, value, key, on_delivery=cb)
                except BufferError:
                    self._produce_blocking(Record(topic, value, key), cb)
                except KafkaException:
                    self.runner.resend_later(delivery, Record(topic, value, key))
                except Exception as exc:
                    self._resend_rest(delivery, prepared, i, exc, refused)
                    break
        else:
            self._send_each(delivery, prepared, refused)

    def _send_each(self, delivery: Delivery, prepared: KafkaRequest, refused: list[Refused]) -> None:
        """Produce record by record (headers, explicit partitions, or records to refuse)."""
        assert self._producer is not None
        produce = self._producer.produce
        cb = functools.partial(self.reports.delivery, delivery)
        for i, topic, value, key, part, hdrs in self.requests.producible(prepared, refused):
            try:
                if part < 0 and hdrs is None:
                    produce(topic, value, key, on_delivery=cb)
                else:
                    produce(topic, value, key, part, on_delivery=cb, headers=hdrs)
            except BufferError:
                self._produce_blocking(Record(topic, value, key, part, hdrs), cb)
            except KafkaException:
                # The producer is being replaced after a fatal error: the poll thread re-sends it.
                self.runner.resend_later(delivery, Record(topic, value, key, part, hdrs))
            except Exception as exc:
                self._resend_rest(delivery, prepared, i, exc, refused)
                return

    def _resend_rest(
        self, delivery: Delivery, prepared: KafkaRequest, start: int, exc: Exception, refused: list[Refused]
    ) -> None:
        """An unexpected error (a bug) stopped the hand-over at record ``start``: that record and
        the rest go to the engine's retries (each is parked there if it fails again)."""
        self.runner.unexpected("hand_over_failed", exc)
        for _, topic, value, key, part, hdrs in self.requests.producible(prepared, refused, start):
            self.runner.resend_later(delivery, Record(topic, value, key, part, hdrs))

    def _send_native(
        self, native: ChunkProducer, delivery: Delivery, prepared: KafkaRequest, refused: list[Refused]
    ) -> None:
        """Hand a chunk to the chunk producer; with ``headers``, each record gets its level's
        header list (the same object for a level's records: the C producer reads each once)."""
        topics, values, keys = prepared.topics, prepared.values, prepared.keys
        parts: list[int] | None = None
        by_level = prepared.headers
        hdrs: list[Headers] | None = (
            list(map(by_level.__getitem__, prepared.chunk.levels)) if by_level is not None else None
        )
        if (
            prepared.partitions is not None
            or prepared.refuse is not None
            or prepared.longest > self.config.max_message_bytes
        ):
            # Leave out what is refused instead (oversize, invalid manual partition).
            keep_t: list[str] = []
            keep_v: list[bytes] = []
            keep_k: list[str | None] = []
            keep_p: list[int] = []
            keep_h: list[Headers] = []
            for _, topic, value, key, part, h in self.requests.producible(prepared, refused):
                keep_t.append(topic)
                keep_v.append(value)
                keep_k.append(key)
                keep_p.append(part)
                if h is not None:
                    keep_h.append(h)
            topics, values = keep_t, keep_v
            keys = keep_k if keys is not None else None
            parts = keep_p if prepared.partitions is not None else None
            hdrs = keep_h if hdrs is not None else None
        counts: dict[str, int] | None = None
        if keys is not None and parts is None and hdrs is None and self._hash_in_c:
            # The hash strategy's murmur2 in C: each partition's records enqueued at once.
            known = self._counts.get
            counts = {t: n for t in prepared.counts if (n := known(t))}
        try:
            native.produce_chunk(delivery, topics, values, keys, parts, hdrs, counts)
        except RuntimeError:
            pass  # closing (stop): these records stay unacknowledged and are read again on restart
        except Exception as exc:
            # Refused before any record was handed over (a bug): the poll thread sends them.
            self.runner.unexpected("hand_over_failed", exc)
            plain = [v.encode() if isinstance(v, str) else v for v in values]  # codec raw: lines
            for i, value in enumerate(plain):
                key = keys[i] if keys is not None else None
                part = parts[i] if parts else -1
                h = hdrs[i] if hdrs is not None else None
                self.runner.resend_later(delivery, Record(topics[i], value, key, part, h))

    def _produce_blocking(self, rec: Record, cb: DeliveryCallback) -> None:
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
            except (BufferError, KafkaException):
                self._space.wait(0.1)

    def _dead_letter_in_txn(self, delivery: Delivery, refused: list[Refused]) -> int:
        """Exactly-once: the records refused before sending (larger than ``max_message_bytes``, an
        invalid manual partition) go to the DLQ topic inside the open transaction, through its
        own producer, with the reason in the ``dlq_*`` headers (a record too large for one DLQ
        record in parts, :func:`.transactions.dead_letter_parts`). Each settles in its chunk once
        its DLQ records have their reports (counted as sent to the DLQ); so the record is
        committed in the DLQ topic with the positions past it, or, the transaction aborted, read
        again: never both delivered and parked, never parked twice. A DLQ record that fails
        fails the transaction. Returns how many records were produced. Inside the gate."""
        producer = self._txn
        assert producer is not None
        topic = self.reports.dlq_topic
        limit = self.config.max_message_bytes
        produced = 0
        for r in refused:
            rec = r.record
            attempt = Attempt(0.0, 0, delivery, rec, 0, r.reason, r.text)
            headers = dead_letter_headers(rec, r.reason, r.text, self.name)
            parts = dead_letter_parts(rec.value, headers, rec.key, limit)
            token = DeadLetterParts(attempt, len(parts), self.reports.dead_letter)
            try:
                if isinstance(producer, ChunkProducer):
                    producer.produce_chunk(
                        token,
                        [topic] * len(parts),
                        [v for v, _ in parts],
                        [rec.key] * len(parts),
                        None,
                        [h for _, h in parts],
                    )
                else:
                    for value, hdrs in parts:
                        self._produce_txn(producer, topic, value, rec.key, hdrs, token.done)
            except RuntimeError:
                return produced  # closing (stop): unacknowledged, read again on restart
            except KafkaException as exc:
                if self._txn_reports is not None and not self._txn_reports.failure:
                    self._txn_reports.failure = f"the DLQ topic {topic}: {explain(exc.args[0])}"
                return produced
            produced += len(parts)
        return produced

    def _produce_txn(
        self,
        producer: Producer,
        topic: str,
        value: bytes,
        key: str | bytes | None,
        hdrs: Headers,
        cb: DeliveryCallback,
    ) -> None:
        """Produce into the open transaction; a full queue waits for room (backpressure)."""
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=cb, headers=hdrs)
                return
            except BufferError:
                if self._stop.is_set():
                    raise RuntimeError("stopping") from None
                self._space.clear()
                self._space.wait(0.1)

    # -- records sent again (poll thread) ------------------------------------------------------
    def resend(self, attempt: Attempt, alone: bool) -> bool:
        if self._txn_failed():
            return False  # never outside the transaction: it is aborted at the next commit
        # Exactly-once: every record goes through the transactional producer.
        producer = self._alone_producer_now() if alone and not self.exactly_once else self._producer
        assert producer is not None
        rec = attempt.record
        try:
            producer.produce(
                rec.topic,
                rec.value,
                rec.key,
                rec.partition,
                on_delivery=functools.partial(self.reports.attempt, attempt),
                headers=rec.headers,
            )
        except (BufferError, KafkaException):
            return False
        return True

    def _alone_producer_now(self) -> Producer:
        """A second producer with ``batch.num.messages=1`` makes one batch per record (pipelined,
        so this is fast); a record that still fails is too large itself."""
        if self._alone_producer is None:
            # No statistics, and no gap-less guarantee: its batches are independent by design.
            skip = ("stats_cb", "statistics.interval.ms", "enable.gapless.guarantee")
            conf = {k: v for k, v in self._conf.items() if k not in skip}
            conf.update({"batch.num.messages": 1, "linger.ms": 0, "client.id": f"{self.name}-solo"})
            self._alone_producer = Producer(conf)
        return self._alone_producer

    def dead_letter(self, attempt: Attempt) -> bool | None:
        """Records Kafka rejected permanently go to the DLQ topic, with the error in headers."""
        topic = self.reports.dlq_topic
        if not topic:
            return None
        if self._txn_failed():
            return False
        producer = self._producer
        assert producer is not None
        rec = attempt.record
        headers = dead_letter_headers(rec, attempt.park_reason, attempt.error, self.name)
        try:
            producer.produce(
                topic,
                rec.value,
                rec.key,
                on_delivery=functools.partial(self.reports.dead_letter, attempt),
                headers=headers,
            )
        except (BufferError, KafkaException):
            return False
        return True

    # -- the poll thread -----------------------------------------------------------------------
    def _poll_loop(self) -> None:
        """Serve the producers until stop. An unexpected exception (a bug) in one round is counted,
        logged and shown in /health, and the next round runs: this thread settles every chunk."""
        while not self._stop.is_set():
            self.poll_rounds += 1
            try:
                self._poll_round()
            except Exception as exc:
                self._poll_error = f"{type(exc).__name__}: {exc}"
                self.runner.unexpected("poll_thread_error", exc)
                self._stop.wait(0.1)
            else:
                self._poll_error = ""

    def _poll_round(self) -> None:
        producer = self._producer
        assert producer is not None
        native = self._native
        runner = self.runner
        try:
            if native is not None:
                self._poll_native(native, producer)
            elif (
                self._linger.push_due(runner.finished, time.monotonic(), self.handed) or self._flush_requested
            ):
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
        if self._fatal:
            if self.exactly_once:
                self._end_fatal()
            self._recreate_producer()
        runner.tick(time.monotonic())
        if self.exactly_once and self._commit_due(time.monotonic()):
            self._commit()
        if self._alone_producer is not None:
            self._poll_alone(self._alone_producer)

    # -- transactions (exactly-once; the poll thread, and the stopping thread at the end) -------
    def _txn_failed(self) -> bool:
        """Exactly-once: a record failed in the open transaction (which is then aborted). Also
        true with the chunk producer, whose retries would go through another producer."""
        return self._txn_reports is not None and (bool(self._txn_reports.failure) or self._native is not None)

    def _commit_due(self, now: float) -> bool:
        with self._lock:
            n = self._txn_records
        cfg = self.config.exactly_once
        return n >= cfg.transaction_max_records or (
            n > 0 and now - self._txn_opened >= cfg.transaction_interval
        )

    def _commit(self, final: bool = False) -> None:
        """Close the gate, wait until every record handed over has its delivery report (each
        chunk given to the sink is then acknowledged, so the files' positions cover exactly what
        the transaction holds), add the positions document, commit, and begin the next one."""
        producer = self._txn
        assert producer is not None and self._producer is not None
        native = self._native
        runner = self.runner
        gate = self._gate
        started = time.monotonic()
        gate.close()
        try:
            deadline = started + self.config.timeout
            while True:
                failure = self._txn_reports.failure if self._txn_reports is not None else ""
                if failure:
                    self._abort(producer, f"a record failed in the transaction: {failure}", final)
                    return
                if (
                    gate.inside == 0
                    and runner.outstanding - gate.waiting <= 0
                    # A chunk can be delivered before the source registered it with its
                    # checkpoint: until then its position does not count it.
                    and all(c.registered for c in self._txn_chunks)
                ):
                    break
                if time.monotonic() > deadline:
                    self._abort(
                        producer,
                        f"records not delivered within sinks.kafka.timeout ({self.config.timeout:g}s)",
                        final,
                    )
                    return
                try:
                    if native is not None:
                        _, settled = native.flush(POLL_INTERVAL)  # also ignores linger.ms
                        if settled:
                            self._settle_native(settled)
                        self._producer.poll(0)
                    else:
                        self._producer.flush(POLL_INTERVAL)  # also ignores linger.ms
                except KafkaException as exc:
                    self._on_error(exc.args[0])
                self._space.set()
                runner.tick(time.monotonic())
            if self._positions_of:
                doc = positions_document(
                    self.transactional_id,
                    {kind: of() for kind, of in self._positions_of.items()},
                    transactional_base(self.config),
                )
                topic = self.config.exactly_once.positions_topic
                if native is not None:
                    native.produce_chunk(POSITIONS_TOKEN, [topic], [doc], [self.transactional_id], None)
                else:
                    self._producer.produce(topic, doc, self.transactional_id)
            self._commit_transaction(producer)
            with self._lock:
                records = self._txn_records
                self._txn_records = 0
                self._txn_chunks = []
                self._txn_requests = {}
            if self._reroute.committed() and self._abort_log is not None:
                # Those lines are in the DLQ topic now: not to be looked for again.
                self._abort_log.save(self.transactions_aborted, self._last_abort, list(self._reroute.entries))
            if not final:
                producer.begin_transaction()
            self._txn_opened = time.monotonic()
            took = self._txn_opened - started
            self._commit_seconds += took
            self._last_commit_seconds = took
            self._records_committed += records
            self.transactions_committed += 1
            self._m_committed.inc()
            self._m_commit_seconds.observe(took)
            self._m_txn_records.observe(records)
        except KafkaException as exc:
            self._abort(producer, f"commit: {explain(exc.args[0])}", final)
        finally:
            gate.open()

    def _commit_transaction(self, producer: Producer | ChunkProducer) -> None:
        """Commit; a retriable error (a coordinator moving, a timeout) is tried again until the
        transaction times out. Anything else raises."""
        deadline = time.monotonic() + self.config.exactly_once.transaction_timeout
        while True:
            try:
                producer.commit_transaction(self.config.timeout)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if not err.retriable() or time.monotonic() > deadline:
                    raise
                log.warning(
                    "exactly-once: commit failed (%s); trying again", explain(err), extra={"sink": self.name}
                )

    def _abort(self, producer: Producer | ChunkProducer, reason: str, final: bool) -> None:
        """Abort the open transaction: none of its records become visible to read_committed
        consumers. While running, the agent then ends (:func:`.transactions.end_process`): what the
        transaction held is read again from the committed positions at the next start."""
        self.metrics.errors.labels("kafka", "transaction_aborted").inc()
        try:
            producer.abort_transaction(self.config.timeout)
        except KafkaException as exc:
            reason += f"; abort_transaction: {explain(exc.args[0])}"
        self.transactions_aborted += 1
        self._last_abort = reason
        self._m_aborted.inc()
        if self._abort_log is not None:
            # The agent ends now: the next run's kafka_transactions_total counts this abort, and
            # a line the broker refused goes to the DLQ topic when read again.
            self._abort_log.save(self.transactions_aborted, reason, self._refused_lines())
        if final:
            log.error(
                "exactly-once: the last transaction was aborted (%s); "
                "its lines are read again at the next start",
                reason,
                extra={"sink": self.name},
            )
            return
        self._end_if_fenced(reason)
        end_process(EXIT_ABORTED, f"transaction aborted: {reason}")

    def _refused_lines(self) -> list[dict[str, Any]]:
        """The lines to send to the DLQ topic when read again: those not yet committed there,
        and the one the broker refused in this transaction (found by its value in its chunk)."""
        entries = list(self._reroute.entries)
        refused = self._txn_reports.refused if self._txn_reports is not None else None
        if refused is None or not self.reports.dlq_topic:
            return entries
        delivery, value, reason, text = refused
        request = self._txn_requests.get(id(delivery.chunk))
        if request is None:
            return entries
        index = next((i for i, v in enumerate(request.values) if v == value), None)
        if index is None:
            return entries
        # The broker refuses a whole batch for its size: the record is the one at fault only if
        # it alone is larger than what the topic takes.
        limit = self._topic_max_bytes(request.topics[index])
        if limit is None or len(value) <= limit:
            return entries
        entry = refused_line(delivery.chunk, index, reason, text)
        if entry not in entries:
            entries.append(entry)
        return entries

    def _topic_max_bytes(self, topic: str) -> int | None:
        """The topic's ``max.message.bytes`` (None when the broker does not say)."""
        keep = ("bootstrap.servers", "security.protocol")
        conf = {k: v for k, v in self._conf.items() if k in keep or k.startswith(("sasl.", "ssl."))}
        try:
            admin = AdminClient(conf)
            res = ConfigResource(ConfigResource.Type.TOPIC, topic)
            entries = admin.describe_configs([res], request_timeout=5)[res].result(5)
            return int(entries["max.message.bytes"].value)
        except Exception as exc:  # the abort goes on: only the line is not remembered
            log.warning(
                "exactly-once: max.message.bytes of %r unknown: %s", topic, exc, extra={"sink": self.name}
            )
            return None

    def _end_if_fenced(self, reason: str) -> None:
        """Another process took this transactional.id (init_transactions fenced this one)."""
        text = f"{self._fatal} {reason}".lower()
        if "fenced" in text or "producer_fenced" in text or "invalid_producer_epoch" in text:
            end_process(
                EXIT_FENCED,
                f"fenced: another agent took transactional.id {self.transactional_id!r} "
                f"({self._fatal or reason}); give each agent its own "
                "sinks.kafka.exactly_once.transactional_id",
            )

    def _end_fatal(self) -> None:
        """A fatal error of the transactional producer: fenced by another process with this
        transactional.id, or broken. It cannot be replaced in place (its transaction is lost)."""
        reason = self._fatal
        self._end_if_fenced(reason)
        producer = self._txn
        assert producer is not None
        self._abort(producer, f"fatal producer error: {reason}", final=False)

    def _poll_native(self, native: ChunkProducer, producer: Producer) -> None:
        """One round with a chunk producer: it sleeps in the chunk producer, and serves the
        confluent-kafka producer (retries, DLQ topic, replays) without waiting."""
        if self._flush_requested:
            self._flush_requested = False
            _, settled = native.flush(POLL_INTERVAL / 2)
            producer.flush(POLL_INTERVAL / 2)
            self._space.set()
        elif self._linger.push_due(self.runner.finished, time.monotonic(), self.handed):
            _, settled = native.flush(POLL_INTERVAL)
            producer.poll(0)
            self._space.set()
        else:
            timeout = POLL_INTERVAL
            if self._may_doze():
                self._dozing = True
                # Checked again with the flag set: a sender that counted its records before the
                # flag was set is seen here; one that counts them later sees the flag and wakes us.
                if self._may_doze():
                    timeout = IDLE_POLL_INTERVAL
            try:
                served, settled = native.poll(timeout)
            finally:
                self._dozing = False
            if producer.poll(0) or served:
                self._space.set()
        if settled:
            self._settle_native(settled)

    def _may_doze(self) -> bool:
        """Nothing for the poll thread to do until a sender hands records over: no record held,
        the engine's queues empty, the breaker closed, no old producer or replay to serve."""
        return (
            not self._flush_requested
            and not self._retired
            and self._alone_producer is None
            and not self.exactly_once
            and not self._stop.is_set()
            and self.runner.quiet()
        )

    def _settle_native(self, settled: list[Any]) -> None:
        """The chunk producer's settled chunks to the engine; the positions record (exactly-once)
        is not a chunk: a failure of it fails the transaction."""
        if self.exactly_once:
            chunks = []
            for item in settled:
                if isinstance(item[0], DeadLetterParts):
                    item[0].settled(item[1], item[2])
                elif item[0] is POSITIONS_TOKEN:
                    if item[2] and self._txn_reports is not None and not self._txn_reports.failure:
                        self._txn_reports.failure = (
                            f"the positions record: {explain(KafkaError(item[2][0][0]))}"
                        )
                else:
                    chunks.append(item)
            settled = chunks
        if settled:
            self.reports.settled(settled)

    def _poll_retired(self) -> None:
        """Collect the last reports of the chunk producers replaced after a fatal error (purge
        errors: their records are sent again), and close each once it holds nothing."""
        keep: list[ChunkProducer] = []
        for old in self._retired:
            _, settled = old.poll(0)
            if settled:
                self._settle_native(settled)
            if old.live_chunks > 0 or len(old) > 0:
                keep.append(old)
            else:
                old.close()
        self._retired = keep

    def _poll_alone(self, producer: Producer) -> None:
        try:
            producer.poll(0)
        except KafkaException as exc:
            if not exc.args[0].fatal():
                return
            # Drop it; what it held comes back with purge errors and is sent again.
            self._alone_producer = None
            with contextlib.suppress(KafkaException):
                producer.purge(in_queue=True, in_flight=True, blocking=True)
            with contextlib.suppress(KafkaException):
                producer.poll(0)

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
            # Senders still inside the old one get immediate fatal errors (sent again); what it
            # holds comes back purged and is sent again too. It is closed once it holds nothing.
            self._fatal_native = False
            retired = self._native
            self._native = self._new_native()
            with contextlib.suppress(RuntimeError):
                retired.purge(in_queue=True, in_flight=True, blocking=True)
            self._retired.append(retired)
            return
        self._producer = Producer(self._conf)
        # Everything the old producer still holds comes back through its delivery reports
        # with a purge error, and is sent again on the new producer.
        with contextlib.suppress(KafkaException):
            old.purge(in_queue=True, in_flight=True, blocking=True)
        deadline = time.monotonic() + 10
        while len(old) > 0 and time.monotonic() < deadline:
            with contextlib.suppress(KafkaException):
                old.poll(0.05)

    # -- librdkafka callbacks (poll thread) ----------------------------------------------------
    def _on_error(self, err: KafkaError, native: bool = False) -> None:
        code = err.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            # Keep the cause (refused connection, failed authentication...) as the message.
            self.reports.all_down = True
        else:
            self._last_error = explain(err)
            if self._runner is not None:
                self._runner.note_error(self._last_error)
        if err.fatal():
            self._fatal = err.str()
            self._fatal_native = native
        self.metrics.errors.labels("kafka", error_type(err)).inc()
        text = explain(err)
        dropped = self._repeats.admit(text)
        if dropped is not None:
            more = f" (and {dropped} times more in the last {self._repeats.window:g}s)" if dropped else ""
            log.warning("Kafka client error: %s%s", text, more, extra={"sink": self.name})

    def _on_stats(self, raw: str) -> None:
        with self._lock:
            counts = list(self.count_by_topic.items())
            sizes = dict(self.bytes_by_topic)
        avg = {t: sizes[t] / n for t, n in counts if n}
        self._stats.update(orjson.loads(raw), avg)
        if self._stats.brokers_up:
            self.reports.all_down = self._stats.all_down

    # -- what the engine asks (poll thread, unless said) ---------------------------------------
    def queued(self) -> int:
        """Records the producers hold. Only records: len() of a librdkafka producer also counts
        the events waiting for poll() (an unreachable broker's connection errors), so those are
        served first; the chunk producer counts its records itself."""
        producer = self._producer
        assert producer is not None
        if producer.poll(0):
            self._space.set()
        return len(producer) + (self._native.records if self._native is not None else 0)

    def state(self) -> ServiceState:
        """Any thread."""
        thread = self._thread
        return ServiceState(
            unreachable=self.reports.all_down,
            fatal=self._fatal,
            thread_error=self._poll_error,
            thread_dead=thread is not None and not thread.is_alive() and not self._stop.is_set(),
            last_error=self._last_error,
            details={"brokers": dict(self._stats.brokers_up)},
        )

    def probe(self) -> str:
        """A metadata request to a broker (the probe thread)."""
        producer = self._producer
        if producer is None:
            return "no producer"
        try:
            md = producer.list_topics(timeout=PROBE_TIMEOUT)
        except KafkaException as exc:
            return f"metadata request failed: {explain(exc.args[0])}"
        return "" if md.brokers else "metadata request: the cluster listed no broker"

    def stats(self) -> dict[str, Any]:
        """Any thread."""
        out: dict[str, Any] = {
            "early_sends": self._linger.pushes,
            "poll_rounds": self.poll_rounds,
            "producer_recreated": self.recreated,
            "chunk_producer": self._native is not None,
            "compression_ratio": dict(self._stats.compression_ratio),
        }
        if self.exactly_once:
            n = self.transactions_committed
            out["transactions"] = {
                "transactional_id": self.transactional_id,
                "committed": n,
                "aborted": self.transactions_aborted,
                "last_abort": self._last_abort,
                "records_committed": self._records_committed,
                "records_open": self._txn_records,
                "average_records": round(self._records_committed / n, 1) if n else 0.0,
                "average_commit_seconds": round(self._commit_seconds / n, 6) if n else 0.0,
                "last_commit_seconds": round(self._last_commit_seconds, 6),
            }
        return out

    # -- replay of parked entries (reprocessor thread) -----------------------------------------
    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        if self.exactly_once:
            return self._replay_committed(records, timeout)
        return self._produce_replay(records, timeout)

    def _produce_replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        return produce_replay(
            self._produce_replayed,
            records,
            timeout,
            config=self.config,
            serve=self._serve_replay,
            stopping=self._stop.is_set,
            on_report=self.reports.replayed,
        )

    def _replay_committed(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        """Exactly-once: a replayed record counts as acknowledged (and leaves the local store)
        only once the transaction it was written in is committed."""
        deadline = time.monotonic() + timeout
        outcome = self._produce_replay(records, timeout)
        # Delivered into the open transaction at the latest: wait until it is committed.
        target = self.transactions_committed + 1
        while (
            self.transactions_committed < target and time.monotonic() < deadline and not self._stop.is_set()
        ):
            self._stop.wait(POLL_INTERVAL)
        if self.transactions_committed < target:
            why = "its transaction was not committed in time"
            return {k: (v if v is not None else why) for k, v in outcome.items()}
        return outcome

    def _produce_replayed(self, *args: Any, **kwargs: Any) -> None:
        producer = self._producer  # the current one: it is replaced after a fatal error
        assert producer is not None
        if not self.exactly_once:
            producer.produce(*args, **kwargs)
            return
        self._gate.enter(0)
        try:
            producer.produce(*args, **kwargs)
            with self._lock:
                self._txn_records += 1
        finally:
            self._gate.leave()

    def _serve_replay(self, timeout: float) -> None:
        """The poll thread serves the reports: send what lingers now, and wait for it."""
        self._flush_requested = True
        self._wake_dozing()
        self._space.wait(timeout)
        self._space.clear()
