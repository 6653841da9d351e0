"""The Kafka source: one member of a consumer group, on the delivery engine.

One thread (``kafka-source``) polls the consumer (confluent-kafka, ``cooperative-sticky``
assignment, ``read_committed``, no automatic commits or offset stores), turns each poll's
records of a partition into chunks (:class:`~log_capturer.sources.http.source.Records`, as HTTP
ingest: one chunk per origin) and submits them. Each chunk carries its records' offsets
(``Chunk.offsets``, ``Chunk.stream`` = ``topic:partition``) and their Kafka metadata in the
field ``metadata_field``. What cannot be a record (not JSON with ``format: json``, no message)
is parked in the local DLQ with its reason.

Offsets (:mod:`.offsets`): a partition's offset is committed only up to the end of the
longest prefix of polls whose records are all acknowledged, every ``commit_interval``
(asynchronously), and synchronously when partitions are revoked and at the stop.

Backpressure: a chunk is submitted with a short wait; when the dispatcher does not take it,
or ``max_in_flight`` records are unacknowledged, every assigned partition is paused and the
loop keeps polling (so the group keeps the member) until there is room again.

Revocation (inside a poll, on this thread): the revoked partitions' records not handed over
yet are dropped (their next owner reads them), their records in flight are waited for up to
``revoke_timeout``, and their watermark is committed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection
from itertools import compress
from typing import TYPE_CHECKING, Any

import orjson

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher, QueueClosed
from log_capturer.record import Chunk, Origin
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.sinks.kafka.client import redacted, security_config
from log_capturer.sinks.kafka.quiet import quiet_logger
from log_capturer.sources.base import BuildContext, SourceComponent, SourceStartError
from log_capturer.sources.http.source import (
    INVALID_JSON,
    NOT_AN_OBJECT,
    PARKED,
    REJECT_LOG_INTERVAL,
    Item,
    Records,
    Rejected,
    park_rejected,
)
from log_capturer.sources.kafka.columns import agent_chunks
from log_capturer.sources.kafka.config import KafkaSourceConfig
from log_capturer.sources.kafka.offsets import TP, Segment, Watermarks
from log_capturer.sources.supervise import Supervisor

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message, TopicPartition

log = logging.getLogger(__name__)

NAME = "kafka_source"
#: The record member that carries a record's Kafka metadata through Records (then renamed).
_META = "\x00kafka"
#: Longest wait of one submit for room in the dispatcher.
SUBMIT_WAIT = 0.2
#: How long the source holds, reading nothing, while the sinks have no room, before it pauses its
#: partitions. librdkafka drops what it prefetched for a partition when it is paused and fetches
#: it again on resume: pausing at every full moment of full speed fetched the same records
#: several times. A hold keeps the prefetch (librdkafka stops fetching by itself once it holds
#: ``queued.max.messages.kbytes``); a longer one (a sink down) pauses, so that the polls go on
#: serving rebalances and the broker keeps what the source cannot take.
PAUSE_AFTER = 1.0
#: Longest wait of a hold for an acknowledgement before the loop looks again.
HOLD_WAIT = 0.05
#: Longest wait of one broker query of the lag measure (group offsets, watermarks).
QUERY_TIMEOUT = 2.0
#: After a broker query of the lag measure went unanswered, the next is this many seconds later
#: (the partitions keep their last lag meanwhile): a broker outage does not slow the poll loop.
QUERY_BACKOFF = 10.0
#: librdkafka's prefetch, sized for records shipped as they come (``librdkafka_options`` may
#: set each differently). librdkafka's defaults keep up to 100,000 records and 64 MiB of values
#: queued, fetch 1 MiB a partition and 50 MiB a broker at a time, and hold a decompressed batch
#: until its last record was taken; once the queue is over a threshold they wait a second
#: (``fetch.queue.backoff.ms``) before the next fetch. The thresholds are looked at before a
#: fetch; what it brings comes on top, decompressed (lz4 batches of log lines: 5-10 times their
#: size), so ``fetch.max.bytes``, one request to a broker for all its partitions, is what bounds
#: the prefetch whatever the number of partitions. Into VictoriaLogs a consumer's process peaked
#: at 221-267 MiB with librdkafka's defaults (2 partitions; 8: 359-371), at 167-183 MiB with
#: these (2, 8 or 16 partitions), at the same rate within the spread: the smaller queue is
#: refilled after 20 ms instead of a second (docs/benchmarks-history.md, 2026-12-07,
#: "librdkafka's prefetch bounded").
PREFETCH: dict[str, int] = {
    "queued.min.messages": 10_000,
    "queued.max.messages.kbytes": 16 << 10,
    "fetch.max.bytes": 1 << 20,
    "max.partition.fetch.bytes": 512 << 10,
    "fetch.queue.backoff.ms": 20,
}


def consumer_config(cfg: KafkaSourceConfig) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": ",".join(cfg.brokers),
        "group.id": cfg.group_id,
        "client.id": "log-capturer-consumer",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "partition.assignment.strategy": "cooperative-sticky",
        "isolation.level": "read_committed",
        "auto.offset.reset": cfg.auto_offset_reset,
        "session.timeout.ms": int(cfg.session_timeout * 1000),
        "max.poll.interval.ms": int(cfg.max_poll_interval * 1000),
        "enable.partition.eof": False,
        "socket.keepalive.enable": True,
        "reconnect.backoff.max.ms": 2000,
    }
    conf.update(security_config(cfg.auth, cfg.tls))
    conf.update(PREFETCH)
    conf.update(cfg.librdkafka_options)
    if "fetch.max.bytes" not in cfg.librdkafka_options:
        # librdkafka refuses a fetch.max.bytes below message.max.bytes (and, itself, a
        # message.max.bytes that is not a number).
        with contextlib.suppress(TypeError, ValueError):
            conf["fetch.max.bytes"] = max(PREFETCH["fetch.max.bytes"], int(conf.get("message.max.bytes", 0)))
    return conf


def _by_partition(messages: list[Message]) -> dict[TP, list[Message]]:
    """A poll's records by partition, in order (a record with an error is logged and left out).
    Without errors, a pass in C per partition instead of Python steps per record."""
    from confluent_kafka import Message

    if list(map(Message.error, messages)).count(None) == len(messages):
        tps: list[Any] = list(
            zip(map(Message.topic, messages), map(Message.partition, messages), strict=True)
        )
        return {
            tp: list(compress(messages, map(tp.__eq__, tps)))
            for tp in dict.fromkeys(tps)
            if tp[0] is not None and tp[1] is not None
        }
    by_tp: dict[TP, list[Message]] = {}
    for m in messages:
        if m.error() is not None:
            log.warning("kafka source: %s", m.error())
            continue
        topic = m.topic()
        partition = m.partition()
        if topic is None or partition is None:
            continue
        by_tp.setdefault((topic, partition), []).append(m)
    return by_tp


class KafkaSource:
    """The ``kafka`` section's source (see the module docstring)."""

    name = NAME

    def __init__(
        self,
        config: KafkaSourceConfig,
        dispatcher: Dispatcher,
        metrics: Metrics,
        dlq: DeadLetterStore | None = None,
    ) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.dlq = dlq
        self.records = Records(config, "kafka")
        self.marks = Watermarks()
        self.supervisor = Supervisor(NAME, metrics)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        #: The admin client of the lag measure (see _measure_lag), created at its first use.
        self._admin: Any = None
        #: No broker query of the lag measure before this (monotonic; see QUERY_BACKOFF).
        self._query_backoff_until = 0.0
        #: Chunks read and not taken by the dispatcher yet, with their segment, in read order.
        self._backlog: deque[tuple[Chunk, Segment, TP]] = deque()
        self._assigned: set[TP] = set()
        self._paused = False
        #: Since when the sinks have had no room (monotonic), None while they have.
        self._blocked_since: float | None = None
        #: Set by every acknowledgement: a hold wakes up on it.
        self._acked = threading.Event()
        #: Times the partitions were paused (holds longer than PAUSE_AFTER).
        self.pauses = 0
        self._last_commit = 0.0
        self._origins: dict[TP, Origin] = {}
        self._lag: dict[TP, int] = {}
        #: Each assigned partition's high watermark at the last lag measure.
        self._high: dict[TP, int] = {}
        #: The group's committed offset of each assigned partition at assignment (-1: none),
        #: queried once for partitions this member has neither read from nor committed.
        self._group_committed: dict[TP, int] = {}
        #: Where a partition with no committed offset starts under auto_offset_reset 'latest'
        #: (its high watermark when first measured).
        self._latest_start: dict[TP, int] = {}
        #: The offset after the last record read of each assigned partition (this assignment).
        self._next_offset: dict[TP, int] = {}
        #: Records skipped because librdkafka fetched them again (see _skip_read_again).
        self.skipped_rereads = 0
        #: Parked records not logged yet (one line per REJECT_LOG_INTERVAL at most), by reason.
        self._parked_since_log: Counter[str] = Counter()
        self._parked_logged = float("-inf")
        #: Since when no partition is assigned (monotonic), None while some are.
        self._unassigned_since: float | None = time.monotonic()
        self.consumed = 0
        self.rejected = 0
        self.rebalances = 0
        self.commit_errors = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        from confluent_kafka import Consumer, KafkaException

        conf = consumer_config(self.config)
        conf["error_cb"] = self._on_error
        conf["on_commit"] = self._committed
        conf["logger"] = quiet_logger(f"{__name__}.librdkafka")
        try:
            self._consumer = Consumer(conf)
            topics = list(self.config.topics)
            self._consumer.subscribe(
                topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        except (KafkaException, ValueError, TypeError) as exc:
            raise SourceStartError(
                f"kafka: the consumer cannot be created ({exc}); check kafka.librdkafka_options, "
                f"kafka.auth and kafka.tls (properties: {redacted(conf)})"
            ) from None
        self._thread = threading.Thread(target=self._run, name="kafka-source", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop polling; records read and not handed over are dropped (read again at the next
        start: their offsets are not committed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def finish(self) -> None:
        """After the drain: commit what was acknowledged, leave the group."""
        consumer = self._consumer
        if consumer is None:
            return
        self._drop_backlog()
        self._commit(sync=True)
        try:
            consumer.close()
        except Exception as exc:  # the broker gone: the group drops the member after the session
            log.warning("kafka source: closing the consumer failed: %s", exc)
        self._consumer = None
        self._admin = None

    # -- the loop ----------------------------------------------------------------------------------
    def _run(self) -> None:
        self.supervisor.run(self._loop, self._stop)

    def _loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        cfg = self.config
        while not self._stop.is_set():
            self._acked.clear()
            self._submit_backlog()
            blocked = bool(self._backlog) or self.marks.in_flight >= cfg.max_in_flight
            if self._holds(blocked):
                self._acked.wait(HOLD_WAIT)
            else:
                self._pause(blocked)
                messages = consumer.consume(cfg.batch_size, 0.1 if blocked else cfg.poll_timeout)
                if messages:
                    self._take(messages)
            now = time.monotonic()
            if now - self._last_commit >= cfg.commit_interval:
                self._commit(sync=False)
                self._measure_lag()
            self.supervisor.ok()

    def _holds(self, blocked: bool) -> bool:
        """Whether the loop holds (waits for acknowledgements without polling) rather than
        polls: while the sinks have had no room for less than PAUSE_AFTER and the partitions
        are not paused."""
        if not blocked:
            self._blocked_since = None
            return False
        now = time.monotonic()
        if self._blocked_since is None:
            self._blocked_since = now
        return not self._paused and now - self._blocked_since < PAUSE_AFTER

    def _pause(self, blocked: bool) -> None:
        consumer = self._consumer
        if consumer is None or blocked == self._paused or not self._assigned:
            return
        from confluent_kafka import TopicPartition

        tps = [TopicPartition(t, p) for t, p in self._assigned]
        if blocked:
            consumer.pause(tps)
            self.pauses += 1
        else:
            consumer.resume(tps)
        self._paused = blocked
        self.metrics.kafka_source_paused.set(1 if blocked else 0)

    def _submit_backlog(self) -> None:
        while self._backlog and not self._stop.is_set():
            chunk, seg, tp = self._backlog[0]
            if tp not in self._assigned:
                self._backlog.popleft()  # revoked: its next owner reads it
                continue
            try:
                taken = self.dispatcher.submit(chunk, None, SUBMIT_WAIT)
            except QueueClosed:
                return
            if not taken:
                return
            self._backlog.popleft()
            chunk.on_done(self._done_callback(seg))

    def _drop_backlog(self, tps: Collection[TP] | None = None) -> None:
        """Drop the chunks not handed over (of ``tps``, else all): their partition's next reader
        reads them again, so the watermark stops before them and nothing waits for them."""
        keep: deque[tuple[Chunk, Segment, TP]] = deque()
        for item in self._backlog:
            if tps is None or item[2] in tps:
                self.marks.drop(item[1])
            else:
                keep.append(item)
        self._backlog = keep

    def _done_callback(self, seg: Segment) -> Callable[[Chunk], None]:
        marks = self.marks
        acked = self._acked

        def done(_chunk: Chunk) -> None:
            marks.part_done(seg)
            acked.set()

        return done

    def _take(self, messages: list[Message]) -> None:
        """Turn a poll's records into chunks, partition by partition, onto the backlog."""
        by_tp = _by_partition(messages)
        for tp, read in by_tp.items():
            if tp not in self._assigned:
                continue
            msgs = read
            expected = self._next_offset.get(tp)
            if expected is not None and (read[0].offset() or 0) < expected:
                msgs = self._skip_read_again(tp, read, expected)
                if not msgs:
                    continue
            self._next_offset[tp] = (msgs[-1].offset() or 0) + 1
            self.metrics.kafka_source_records.labels(tp[0]).inc(len(msgs))
            self.consumed += len(msgs)
            first = msgs[0].offset() or 0
            last = msgs[-1].offset() or 0
            seg = self.marks.add(tp, first, last + 1, len(msgs))
            origin = self._origin(tp)
            cfg = self.config
            fast = agent_chunks(self.records, origin, cfg.metadata_field, tp, msgs, cfg.format)
            rejected: list[Rejected] = []
            if fast is None:
                chunks, rejected = self.records.chunks(self._items(tp, msgs), origin)
                for chunk in chunks:
                    self._finish_chunk(chunk, tp)
            else:
                chunks = fast
            for chunk in chunks:
                self.marks.add_part(seg)
                self._backlog.append((chunk, seg, tp))
            if rejected and not self._reject(rejected):
                self.marks.add_part(seg)  # never finished: the offset stops before this poll
            self.marks.seal(seg)

    def _skip_read_again(self, tp: TP, msgs: list[Message], expected: int) -> list[Message]:
        """The records of ``tp`` from ``expected`` on. Those below it were already read in this
        assignment (handed over, or waiting to be): librdkafka fetched the partition again from
        an earlier offset (seen in tests with paused and resumed partitions and cooperative
        rebalances: from the partition's first offset, not understood yet). They are skipped;
        when none is left, the partition is sought back to ``expected``."""
        from confluent_kafka import KafkaException, TopicPartition

        keep = [m for m in msgs if (m.offset() or 0) >= expected]
        self.skipped_rereads += len(msgs) - len(keep)
        if keep:
            return keep
        log.warning(
            "kafka source: %s[%d] was fetched again from offset %s, below %d already read; "
            "those records are skipped and the partition sought back to %d",
            tp[0],
            tp[1],
            msgs[0].offset(),
            expected,
            expected,
        )
        consumer = self._consumer
        if consumer is not None:
            try:
                consumer.seek(TopicPartition(tp[0], tp[1], expected))
            except KafkaException as exc:
                log.warning("kafka source: seeking %s[%d] failed: %s", tp[0], tp[1], exc)
        return []

    def _origin(self, tp: TP) -> Origin:
        origin = self._origins.get(tp)
        if origin is None:
            cfg = self.config
            origin = Origin(cfg.source_type, cfg.source_id or tp[0], dict(cfg.labels), cfg.pipeline)
            self._origins[tp] = origin
        return origin

    def _items(self, tp: TP, msgs: list[Message]) -> list[Item]:
        fmt = self.config.format
        topic, partition = tp
        items: list[Item] = []
        for i, m in enumerate(msgs, 1):
            value = m.value() or b""
            key = m.key()
            ts_type, ts = m.timestamp()
            meta: dict[str, Any] = {
                "topic": topic,
                "partition": partition,
                "offset": m.offset(),
                "key": key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key,
                "timestamp": ts if ts_type else None,
            }
            headers = m.headers()
            if headers:
                pairs = headers.items() if isinstance(headers, dict) else headers
                meta["headers"] = {
                    k: v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v for k, v in pairs
                }
            event_ns = ts * 1_000_000 if ts_type and ts > 0 else None
            if fmt != "raw" and value[:1] == b"{":
                try:
                    rec = orjson.loads(value)
                except orjson.JSONDecodeError as exc:
                    if fmt == "json":
                        text = value.decode("utf-8", "backslashreplace")
                        items.append(
                            Rejected(
                                i,
                                INVALID_JSON,
                                f"offset {m.offset()}: not JSON ({exc})",
                                {"raw": text, _META: meta},
                            )
                        )
                        continue
                else:
                    if isinstance(rec, dict):
                        rec[_META] = meta
                        items.append((rec, event_ns))
                        continue
            if fmt == "json":
                text = value.decode("utf-8", "backslashreplace")
                why = f"offset {m.offset()}: not a JSON object (kafka.format: json)"
                items.append(Rejected(i, NOT_AN_OBJECT, why, {"raw": text, _META: meta}))
                continue
            text = value.decode("utf-8", "backslashreplace")
            items.append(({"message": text, _META: meta}, event_ns))
        return items

    def _finish_chunk(self, chunk: Chunk, tp: TP) -> None:
        """Take each line's Kafka metadata out of the private member into ``metadata_field``,
        and the offsets into ``chunk.offsets``."""
        field = self.config.metadata_field
        offsets: list[int] = []
        meta = chunk.meta
        if meta is None or len(meta) != len(chunk.lines):  # cannot happen: every item carries it
            raise RuntimeError(f"kafka source: the records of {tp} lost their metadata")
        for m in meta:
            km = m.pop(_META, None) if m is not None else None
            if m is None or km is None:
                raise RuntimeError(f"kafka source: a record of {tp} lost its metadata")
            offsets.append(km["offset"])
            m[field] = km
        chunk.offsets = offsets
        chunk.stream = f"{tp[0]}:{tp[1]}"

    def _reject(self, rejected: list[Rejected]) -> bool:
        """Park records that cannot be shipped; False when the DLQ could not take them."""
        field = self.config.metadata_field
        for r in rejected:
            if _META in r.original:
                r.original[field] = r.original.pop(_META)
        outcomes, dlq_error = park_rejected(
            rejected, self.dlq, False, self.metrics.kafka_source_rejected, NAME
        )
        self.rejected += len(rejected)
        reasons = Counter(r.reason for r in rejected)
        if dlq_error:
            log.error(
                "kafka source: %d records could not be parked (%s): %s; their partition's offset "
                "is not committed past them",
                len(rejected),
                dict(reasons),
                dlq_error,
            )
            return False
        self._parked_since_log.update(reasons)
        now = time.monotonic()
        if now - self._parked_logged >= REJECT_LOG_INTERVAL:
            log.warning(
                "kafka source: %d records parked in the local DLQ (%s) since the last such line; e.g. %s",
                sum(self._parked_since_log.values()),
                dict(self._parked_since_log),
                rejected[0].error,
            )
            self._parked_logged = now
            self._parked_since_log.clear()
        return all(o == PARKED for _, o in outcomes)

    # -- commits -----------------------------------------------------------------------------------
    def _commit(self, sync: bool, tps: list[TP] | None = None) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        from confluent_kafka import KafkaException, TopicPartition

        self._last_commit = time.monotonic()
        offsets = self.marks.to_commit(tps)
        if not offsets:
            return
        tpl = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            if sync:
                self._committed(None, consumer.commit(offsets=tpl, asynchronous=False) or [])
            else:
                # Counted once the broker answers (``_committed``, the on_commit callback, inside
                # a later poll); a failed one is sent again at the next interval.
                consumer.commit(offsets=tpl, asynchronous=True)
        except KafkaException as exc:
            self._commit_failed(exc)

    def _committed(self, err: Any, partitions: list[TopicPartition]) -> None:
        """The broker's answer to a commit (librdkafka's on_commit, or a synchronous commit's)."""
        if err is not None:
            self._commit_failed(err)
            return
        done: dict[TP, int] = {}
        for tp in partitions:
            if tp.error is not None:
                self._commit_failed(tp.error)
                continue
            done[(tp.topic, tp.partition)] = tp.offset
        back = self.marks.committed(done)
        if back:
            log.warning(
                "kafka source: an older commit of %s landed after a newer one (sent again after a "
                "coordinator change); the acknowledged offsets are committed again",
                ", ".join(f"{t}[{p}]@{done[(t, p)]}" for t, p in back),
            )
        for (t, p), o in done.items():
            self.metrics.kafka_source_committed.labels(t, str(p)).set(o)

    def _measure_lag(self) -> None:
        """Each assigned partition's lag: its high watermark minus the offset it counts from.

        That offset is the one this member committed, else the first it read, and the high
        watermark the last fetch's. For a partition without both (assigned and not read from
        yet: just assigned, paused, or idle), and for every partition while they are paused (a
        paused partition fetches nothing), they come from the broker, through a separate admin
        client (its requests do not wait behind the consumer's fetches): the high watermark, and
        the group's committed offset (once per assignment), else where ``auto_offset_reset``
        starts it (the low watermark for 'earliest', the high watermark when first measured for
        'latest'), as ``kafka-consumer-groups`` reports it.
        """
        consumer = self._consumer
        if consumer is None:
            return
        from confluent_kafka import KafkaException, TopicPartition

        bases = self.marks.lag_base()
        lag: dict[TP, int] = {}
        highs: dict[TP, int] = {}
        unread: list[TP] = []
        for tp in sorted(self._assigned):
            try:
                _low, high = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            except KafkaException:
                high = -1
            # Paused, a partition fetches nothing: its last fetch's high watermark stands still
            # while records arrive, so it is asked of the broker like an unread one.
            if bases.get(tp, -1) >= 0 and high >= 0 and not self._paused:
                highs[tp] = high
                lag[tp] = max(0, high - bases[tp])
            else:
                unread.append(tp)
        if unread and time.monotonic() < self._query_backoff_until:
            lag.update({tp: self._lag[tp] for tp in unread if tp in self._lag})
            highs.update({tp: self._high[tp] for tp in unread if tp in self._high})
        elif unread:
            self._measure_unread(unread, bases, lag, highs)
        for tp, n in lag.items():
            self.metrics.kafka_source_lag.labels(tp[0], str(tp[1])).set(n)
        self._lag = lag
        self._high = highs

    def _measure_unread(
        self, unread: list[TP], bases: dict[TP, int], lag: dict[TP, int], highs: dict[TP, int]
    ) -> None:
        """The lag and high watermark of ``unread`` partitions, from the broker, into ``lag`` and
        ``highs``; nothing more once a query goes unanswered (see QUERY_BACKOFF)."""
        self._learn_group_offsets([tp for tp in unread if tp not in self._group_committed])
        if time.monotonic() < self._query_backoff_until:
            return
        starts = {tp: bases.get(tp, -1) for tp in unread}
        for tp, base in starts.items():
            if base < 0:
                starts[tp] = self._group_committed.get(tp, -1)
        latest = self._list_offsets(unread, earliest=False)
        if not latest:
            return
        reset_earliest = self.config.auto_offset_reset == "earliest"
        from_low = [tp for tp, b in starts.items() if b < 0 and reset_earliest]
        earliest = self._list_offsets(from_low, earliest=True) if from_low else {}
        for tp in unread:
            high = latest.get(tp, -1)
            if high < 0:
                continue
            base = starts[tp]
            if base < 0:
                if reset_earliest:
                    base = earliest.get(tp, -1)
                    if base < 0:
                        continue
                else:
                    base = self._latest_start.setdefault(tp, high)
            highs[tp] = high
            lag[tp] = max(0, high - base)

    def _admin_client(self) -> Any:
        """The admin client of the lag measure (created at its first use)."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            cfg = self.config
            conf: dict[str, Any] = {
                "bootstrap.servers": ",".join(cfg.brokers),
                "client.id": "log-capturer-consumer-lag",
                **security_config(cfg.auth, cfg.tls),
                "logger": quiet_logger(f"{__name__}.librdkafka"),
            }
            self._admin = AdminClient(conf)
        return self._admin

    def _list_offsets(self, tps: list[TP], earliest: bool) -> dict[TP, int]:
        """The low (``earliest``) or high (read_committed) watermarks of ``tps``, from the broker;
        partitions it did not answer for are left out."""
        from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
        from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]  # (not in its stubs)

        spec = OffsetSpec.earliest() if earliest else OffsetSpec.latest()  # type: ignore[no-untyped-call]
        try:
            futures = self._admin_client().list_offsets(
                {TopicPartition(*tp): spec for tp in tps},
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=QUERY_TIMEOUT,
            )
        except (KafkaException, ValueError) as exc:
            log.debug("kafka source: offsets could not be listed (%s)", exc)
            self._query_backoff_until = time.monotonic() + QUERY_BACKOFF
            return {}
        out: dict[TP, int] = {}
        for tp, fut in futures.items():
            try:
                out[(tp.topic, tp.partition)] = fut.result(QUERY_TIMEOUT).offset
            except Exception as exc:  # KafkaException, or the future's TimeoutError
                log.debug("kafka source: no offset of %s[%s] (%s)", tp.topic, tp.partition, exc)
        if len(out) < len(futures):
            self._query_backoff_until = time.monotonic() + QUERY_BACKOFF
        return out

    def _learn_group_offsets(self, tps: list[TP]) -> None:
        """The group's committed offsets of ``tps`` (once per assignment; again at the next
        measure for partitions the broker did not answer for)."""
        if not tps:
            return
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        request = ConsumerGroupTopicPartitions(self.config.group_id, [TopicPartition(*tp) for tp in tps])
        try:
            futures = self._admin_client().list_consumer_group_offsets(
                [request], request_timeout=QUERY_TIMEOUT
            )
            got = futures[self.config.group_id].result(QUERY_TIMEOUT)
        except Exception as exc:  # KafkaException, or the future's TimeoutError
            log.debug("kafka source: the group's offsets could not be read (%s)", exc)
            self._query_backoff_until = time.monotonic() + QUERY_BACKOFF
            return
        for tp in got.topic_partitions or []:
            if tp.error is None:
                self._group_committed[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else -1

    def _commit_failed(self, err: Any) -> None:
        self.commit_errors += 1
        log.warning("kafka source: a commit failed (%s); it is sent again", err)

    # -- rebalances (on the loop's thread, inside a poll) --------------------------------------------
    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self.rebalances += 1
        self.metrics.kafka_source_rebalances.labels("assign").inc()
        self.marks.assign(tps)
        self._assigned.update(tps)
        if self._assigned:
            self._unassigned_since = None
        if self._paused and partitions:
            _consumer.pause(partitions)
        log.info("kafka source: assigned %s", ", ".join(f"{t}[{p}]" for t, p in tps))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self.rebalances += 1
        self.metrics.kafka_source_rebalances.labels("revoke").inc()
        self._assigned.difference_update(tps)
        self._lost_partitions(tps)
        self._drop_backlog(tps)
        settled = self.marks.wait_settled(tps, self.config.revoke_timeout)
        self._commit(sync=True, tps=tps)
        self.marks.revoke(tps)
        log.info(
            "kafka source: revoked %s%s",
            ", ".join(f"{t}[{p}]" for t, p in tps),
            ""
            if settled
            else " (records still in flight after revoke_timeout: the next owner reads them again)",
        )

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self.rebalances += 1
        self.metrics.kafka_source_rebalances.labels("lost").inc()
        self._assigned.difference_update(tps)
        self._lost_partitions(tps)
        self._drop_backlog(tps)
        self.marks.revoke(tps)
        log.warning("kafka source: lost %s (not committed: another member owns them)", tps)

    def _lost_partitions(self, tps: list[TP]) -> None:
        for tp in tps:
            self._lag.pop(tp, None)
            self._next_offset.pop(tp, None)
            self._high.pop(tp, None)
            self._group_committed.pop(tp, None)
            self._latest_start.pop(tp, None)
            with contextlib.suppress(KeyError):  # never measured
                self.metrics.kafka_source_lag.remove(tp[0], str(tp[1]))
        if not self._assigned and self._unassigned_since is None:
            self._unassigned_since = time.monotonic()

    def _on_error(self, err: Any) -> None:
        log.warning("kafka source: %s", err)

    # -- /health, /stats ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The supervisor's state; degraded (unless worse) while the lag is above
        ``lag_threshold`` or no partition was assigned for longer than ``session_timeout``."""
        out = self.supervisor.health()
        lag = sum(self._lag.values())
        out.update(assigned=len(self._assigned), paused=self._paused, in_flight=self.marks.in_flight, lag=lag)
        problems = []
        threshold = self.config.lag_threshold
        if threshold and lag > threshold:
            problems.append(f"the lag ({lag} records) is above kafka.lag_threshold ({threshold})")
        since = self._unassigned_since
        if since is not None and time.monotonic() - since > self.config.session_timeout:
            problems.append(
                f"no partition assigned for {time.monotonic() - since:.0f}s (more members than "
                "partitions in the group, or the group cannot be joined)"
            )
        if problems and out.get("status") == "healthy":
            out["status"] = "degraded"
            out["message"] = "; ".join(problems)
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "consumed": self.consumed,
            "rejected": self.rejected,
            "rebalances": self.rebalances,
            "commit_errors": self.commit_errors,
            "skipped_rereads": self.skipped_rereads,
            "in_flight": self.marks.in_flight,
            "paused": self._paused,
            "pauses": self.pauses,
            "lag": sum(self._lag.values()),
            "partitions": self._partition_stats(),
        }

    def _partition_stats(self) -> dict[str, dict[str, Any]]:
        """Per assigned partition: its acknowledged watermark, the committed offset (this
        member's, else the group's at assignment; -1: none), records in flight, the high
        watermark and the lag of the last measure (None: not measured yet), paused."""
        lag, high, group = self._lag, self._high, self._group_committed
        out: dict[str, dict[str, Any]] = {}
        for tp, (w, c, n) in sorted(self.marks.partitions().items()):
            out[f"{tp[0]}:{tp[1]}"] = {
                "topic": tp[0],
                "partition": tp[1],
                "watermark": w,
                "committed": c if c >= 0 else group.get(tp, -1),
                "in_flight": n,
                "high_watermark": high.get(tp),
                "lag": lag.get(tp),
                "paused": self._paused,
            }
        return out


def build(config: KafkaSourceConfig, ctx: BuildContext) -> KafkaSource | None:
    if not config.enabled:
        return None
    return KafkaSource(config, ctx.dispatcher, ctx.metrics, ctx.dlq)


def problems(config: KafkaSourceConfig) -> list[str]:
    from log_capturer.sinks.kafka.client import tls_file_problems

    if not config.enabled:
        return []
    return [p.replace("sinks.kafka.tls", "kafka.tls") for p in tls_file_problems(config.tls)]


COMPONENT = SourceComponent(
    build=build,
    stats_key="kafka",
    idle_stats={
        "consumed": 0,
        "rejected": 0,
        "rebalances": 0,
        "commit_errors": 0,
        "skipped_rereads": 0,
        "in_flight": 0,
        "paused": False,
        "lag": 0,
        "partitions": {},
    },
    pipelines=lambda section: {section.source_type: section.pipeline} if section.pipeline else {},
    problems=problems,
)
