"""The Kafka sink: confluent-kafka (librdkafka) with delivery-report acknowledgements.

Threads: the dispatcher worker calls :meth:`KafkaSink.send`, which encodes and
produces; one poll thread serves every delivery report, runs retries, samples
statistics and recreates the producer after a fatal error. All per-record
bookkeeping happens on the poll thread, so it needs no locks; the sender hands
it work through deques.

A record's fate is always one of: delivered (its chunk is acknowledged),
retried (produced again after a back-off, as often as needed, so a broker
outage longer than ``timeout`` loses nothing), or parked in the dead-letter
store (permanent errors, oversize records, invalid manual partitions), which
also acknowledges it.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from log_capturer.config.schema import KafkaSinkConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk
from log_capturer.reliability.dlq import DeadLetterStore, DLQEntry, DLQWriteError
from log_capturer.sinks.base import SinkHealth, Status
from log_capturer.sinks.kafka.config import producer_config, redacted
from log_capturer.sinks.kafka.encode import encode_chunk
from log_capturer.sinks.kafka.errors import SIZE_ERRORS, Disposition, classify, dlq_reason, error_type
from log_capturer.sinks.kafka.partitioning import InvalidPartition, PartitionChooser
from log_capturer.sinks.kafka.stats import StatsTracker

log = logging.getLogger(__name__)

HIGH = frozenset({"error", "fatal", "critical"})
NORMAL = frozenset({"warn", "info"})
LOW = frozenset({"debug", "trace"})
LEVELS = ("", "trace", "debug", "info", "warn", "error", "fatal", "critical")
RETRY_MAX_DELAY = 30.0
#: Longest the poll thread sleeps in librdkafka; bounds how late an idle flush is.
POLL_INTERVAL = 0.005

Headers = list[tuple[str, str | bytes | None]]
DeliveryCallback = Callable[[KafkaError | None, Message], None]


class SinkStartError(RuntimeError):
    """The sink cannot start with this configuration; the message names the key to fix."""


class _Delivery:
    """One chunk's records in flight. Touched only by the poll thread once produced."""

    __slots__ = ("chunk", "failed", "remaining", "sink", "started", "topics")

    def __init__(self, sink: KafkaSink, chunk: Chunk, topics: collections.Counter[str]) -> None:
        self.sink = sink
        self.chunk = chunk
        # One extra count is held by the sender until it has produced every record.
        self.remaining = len(chunk.lines) + 1
        self.started = time.monotonic()
        self.topics = topics
        self.failed = 0

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
    park_reason: str = field(compare=False, default="")
    error: str = field(compare=False, default="")


class KafkaSink:
    sink_type = "kafka"

    def __init__(
        self,
        config: KafkaSinkConfig,
        metrics: Metrics,
        dlq: DeadLetterStore | None,
        name: str = "kafka_sink",
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        self.config = config
        self.name = name
        self.metrics = metrics
        self.dlq = dlq
        self._factory = producer_factory
        self._conf = producer_config(config)
        self._conf.update(
            {
                "error_cb": self._on_error,
                "stats_cb": self._on_stats,
                "statistics.interval.ms": 2000,
                # librdkafka's own log lines go through logging, as structured records.
                "logger": logging.getLogger("librdkafka"),
            }
        )
        self._producer: Producer | None = None
        self._topic_of = _routing(config)
        part = config.partitioning
        self._key_field = part.key_field if part.enabled else None
        self._chooser = PartitionChooser(part.strategy if part.enabled else "hash", self._partition_count)
        self._headers_by_level: dict[str, Headers] | None = None
        self._host = socket.gethostname().encode()
        self._settle: collections.deque[tuple[_Delivery, int]] = collections.deque()
        self._resend: collections.deque[tuple[_Delivery, _Record]] = collections.deque()
        self._retries: list[_Retry] = []
        self._solo: collections.deque[_Retry] = collections.deque()
        self._solo_producer: Producer | None = None
        self._seq = itertools.count()
        self._space = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_requested = False
        self._stats = StatsTracker(metrics, name, config.compression)
        # Counters: each is written by one thread only.
        self.produced = 0  # sender
        self.bytes_by_topic: dict[str, int] = collections.defaultdict(int)  # sender
        self.count_by_topic: dict[str, int] = collections.defaultdict(int)  # sender
        self.finished = 0  # poll thread
        self.delivered = 0  # poll thread
        self.parked = 0  # poll thread
        self.retried = 0  # poll thread
        self.recreated = 0  # poll thread
        self.delivered_by_topic: dict[str, int] = {}  # poll thread
        self._last_error = ""
        self._last_error_at = 0.0
        self._all_down = False
        self._fatal = ""

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._check_files()
        try:
            self._producer = self._factory(self._conf)
        except KafkaException as exc:
            raise SinkStartError(f"sinks.kafka: the producer rejected its configuration: {exc}") from exc
        for b in self.config.brokers:
            self.metrics.kafka_connection_status.labels(b, self.name).set(0)
        self.metrics.kafka_circuit_breaker_state.labels(self.name).set(0)
        self._thread = threading.Thread(target=self._poll_loop, name=f"{self.name}-poll", daemon=True)
        self._thread.start()
        log.info(
            "Kafka sink initialized",
            extra={"sink": self.name, "producer_config": redacted(producer_config(self.config))},
        )

    def _check_files(self) -> None:
        tls = self.config.tls
        if not tls.enabled:
            return
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, key)
            if path and not os.access(path, os.R_OK):
                reason = "does not exist" if not os.path.exists(path) else "is not readable"
                raise SinkStartError(f"sinks.kafka.tls.{key}: {path} {reason}")

    @property
    def outstanding(self) -> int:
        return self.produced - self.finished

    def idle(self) -> None:
        """The dispatcher has nothing more queued: send what waits for its batch now."""
        if self.config.adaptive_batching:
            self._flush_requested = True

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
        if self._thread is not None:
            self._thread.join(10)

    # -- sending (dispatcher thread) -----------------------------------------------------------
    def send(self, chunks: list[Chunk]) -> None:
        for chunk in chunks:
            self._send_chunk(chunk)

    def _send_chunk(self, chunk: Chunk) -> None:
        assert self._producer is not None, "start() first"
        topic_of = self._topic_of
        levels = chunk.levels
        topics = list(map(topic_of.__getitem__, levels))
        topic_counts = collections.Counter(topics)
        delivery = _Delivery(self, chunk, topic_counts)
        cb = delivery.on_delivery
        keys = self._keys(chunk)
        values = encode_chunk(chunk, self._key_field)
        partitions = self._partitions(topics, keys) if self._chooser.explicit else None
        headers = self._chunk_headers(chunk) if self.config.headers else None
        max_bytes = self.config.max_message_bytes
        parked: list[DLQEntry] = []
        sizes: dict[str, list[int]] = collections.defaultdict(list)
        produce = self._producer.produce
        for i, value in enumerate(values):
            topic = topics[i]
            key = keys[i] if keys is not None else None
            size = len(value)
            sizes[topic].append(size)
            if size > max_bytes:
                parked.append(
                    self._entry(
                        value,
                        topic,
                        key,
                        "message_too_large",
                        f"record of {size} bytes exceeds max_message_bytes={max_bytes}",
                    )
                )
                continue
            part = -1
            if partitions is not None:
                p = partitions[i]
                if isinstance(p, InvalidPartition):
                    parked.append(self._entry(value, topic, key, "invalid_partition", str(p)))
                    continue
                part = p
            hdrs = headers[levels[i]] if headers is not None else None
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
        self.produced += len(values)
        for topic, topic_sizes in sizes.items():
            self.bytes_by_topic[topic] += sum(topic_sizes)
            self.count_by_topic[topic] += len(topic_sizes)
            topic_sizes.sort()
            self.metrics.kafka_message_size.observe_sorted((topic,), topic_sizes)
        if parked and not self._park_now(parked):
            # Stopping while the DLQ refuses writes: these lines stay unacknowledged, so the
            # chunk is never checkpointed and a restart reads it again.
            return
        for e in parked:
            topic_counts[e.topic] -= 1
        self._settle.append((delivery, len(parked)))

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
        common: Headers = []
        for h in self.config.headers:
            if h == "source_type":
                common.append(("source_type", origin.source_type.encode()))
            elif h == "source_id":
                common.append(("source_id", origin.source_id.encode()))
            elif h == "host":
                common.append(("host", self._host))
        if "level" not in self.config.headers:
            return dict.fromkeys(LEVELS, common)
        return {lvl: [("level", lvl.encode()), *common] for lvl in LEVELS}

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

    def _entry(
        self, value: bytes, topic: str, key: str | bytes | None, etype: str, msg: str, retries: int = 0
    ) -> DLQEntry:
        try:
            original: dict[str, Any] = orjson.loads(value)
        except orjson.JSONDecodeError:
            original = {"raw": value.decode("utf-8", "backslashreplace")}
        k = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key
        return DLQEntry(original, msg, etype, self.name, topic=topic, key=k, retry_count=retries)

    def _park_now(self, entries: list[DLQEntry]) -> bool:
        """Park records refused before producing; waits until the store accepts them.

        False only when the sink is stopping before the store accepted them.
        """
        delay = 0.5
        while True:
            try:
                if self.dlq is None:
                    raise DLQWriteError(0, "the local DLQ is disabled (dispatcher.dlq_config.enabled)")
                self.dlq.park(entries)
                break
            except DLQWriteError as exc:
                self._note_error(f"DLQ write failed: {exc}")
                self.metrics.errors.labels("dlq", "write_failed").inc()
                log.error("cannot park %d records in the DLQ, retrying: %s", len(entries), exc)
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, RETRY_MAX_DELAY)
        for e in entries:
            self.metrics.kafka_dlq_messages.labels(e.topic, e.error_type).inc()
            log.warning(
                "record parked in the DLQ: %s",
                e.error_message,
                extra={"sink": self.name, "topic": e.topic, "reason": e.error_type},
            )
        self.metrics.logs_sent.labels(self.sink_type, "dlq").inc(len(entries))
        return True

    # -- poll thread ---------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        last_gauges = 0.0
        while not self._stop.is_set():
            producer = self._producer
            assert producer is not None
            try:
                if producer.poll(POLL_INTERVAL):
                    self._space.set()
            except KafkaException as exc:
                self._on_error(exc.args[0])
            while self._settle:
                delivery, parked = self._settle.popleft()
                delivery.failed += parked
                self.parked += parked
                delivery.settle(parked + 1)
            if self._fatal:
                self._recreate_producer()
            while self._resend:
                delivery, rec = self._resend.popleft()
                heapq.heappush(self._retries, _Retry(0.0, next(self._seq), delivery, rec, 0))
            if self._flush_requested:
                self._flush_requested = False
                with contextlib.suppress(KafkaException):
                    producer.flush(0)
            if self._retries:
                self._run_due_retries()
            if self._solo:
                self._send_solo()
            if self._solo_producer is not None:
                self._poll_solo(self._solo_producer)
            now = time.monotonic()
            if now - last_gauges >= 1.0:
                last_gauges = now
                self._update_gauges()

    def _recreate_producer(self) -> None:
        """A fatal error made the producer unusable: replace it and re-send what it held."""
        old = self._producer
        assert old is not None
        reason = self._fatal
        log.error("Kafka producer hit a fatal error; recreating it: %s", reason, extra={"sink": self.name})
        self.metrics.errors.labels("kafka", "producer_recreated").inc()
        self._producer = self._factory(self._conf)
        self.recreated += 1
        self._fatal = ""
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
        d.chunk.ack(n)

    def _failed(self, d: _Delivery, err: KafkaError, rec: _Record, attempt: int) -> None:
        disposition = classify(err)
        etype = error_type(err)
        m = self.metrics
        m.kafka_producer_errors.labels(rec.topic, etype).inc()
        m.kafka_messages_produced.labels(rec.topic, "error").inc()
        self._note_error(f"{etype}: {err.str()}")
        now = time.monotonic()
        if disposition is Disposition.PERMANENT and attempt == 0 and err.code() in SIZE_ERRORS:
            # The broker refuses a whole batch when it is too large, small records included:
            # send each record of it once more on its own before deciding it is too large.
            self._solo.append(_Retry(now, next(self._seq), d, rec, 1))
            return
        if disposition is Disposition.PERMANENT:
            retry = _Retry(
                now,
                next(self._seq),
                d,
                rec,
                attempt,
                park_reason=dlq_reason(disposition),
                error=f"{etype}: {err.str()}",
            )
        else:
            delay = 0.0 if disposition is Disposition.TIMEOUT else min(0.25 * 2**attempt, RETRY_MAX_DELAY)
            retry = _Retry(now + delay, next(self._seq), d, rec, attempt + 1)
        heapq.heappush(self._retries, retry)

    def _run_due_retries(self) -> None:
        producer = self._producer
        assert producer is not None
        now = time.monotonic()
        while self._retries and self._retries[0].due <= now:
            r = heapq.heappop(self._retries)
            if r.park_reason:
                if not self._park_from_poll(r):
                    return
                continue
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
            self._solo_producer = self._factory(conf)
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
            self._solo.popleft()
            self.retried += 1

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
            r.delivery.settle(1)
        else:
            self._failed(r.delivery, err, r.record, r.attempt)

    def _park_from_poll(self, r: _Retry) -> bool:
        rec = r.record
        entry = self._entry(rec.value, rec.topic, rec.key, r.park_reason, r.error, r.attempt)
        try:
            if self.dlq is None:
                raise DLQWriteError(0, "the local DLQ is disabled (dispatcher.dlq_config.enabled)")
            self.dlq.park([entry])
        except DLQWriteError as exc:
            self._note_error(f"DLQ write failed: {exc}")
            self.metrics.errors.labels("dlq", "write_failed").inc()
            r.due = time.monotonic() + 1.0
            heapq.heappush(self._retries, r)
            return False
        self.metrics.kafka_dlq_messages.labels(rec.topic, r.park_reason).inc()
        self.metrics.logs_sent.labels(self.sink_type, "dlq").inc()
        log.warning(
            "record parked in the DLQ: %s",
            r.error,
            extra={"sink": self.name, "topic": rec.topic, "reason": r.park_reason},
        )
        r.delivery.failed += 1
        r.delivery.topics[rec.topic] -= 1
        self.parked += 1
        r.delivery.settle(1)
        return True

    # -- librdkafka callbacks (poll thread) ----------------------------------------------------
    def _on_error(self, err: KafkaError) -> None:
        code = err.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            # Keep the cause (refused connection, failed authentication...) as the message.
            self._all_down = True
        else:
            self._note_error(_explain(err))
        if err.fatal():
            self._fatal = err.str()
        self.metrics.errors.labels("kafka", error_type(err)).inc()
        log.warning("Kafka client error: %s", _explain(err), extra={"sink": self.name})

    def _on_stats(self, raw: str) -> None:
        avg = {t: self.bytes_by_topic[t] / n for t, n in list(self.count_by_topic.items()) if n}
        self._stats.update(orjson.loads(raw), avg)
        if self._stats.brokers_up:
            self._all_down = self._stats.all_down

    def _note_error(self, text: str) -> None:
        self._last_error = text
        self._last_error_at = time.time()

    def _update_gauges(self) -> None:
        producer = self._producer
        assert producer is not None
        queued = len(producer)
        self.metrics.kafka_queue_size.labels(self.name).set(queued)
        self.metrics.kafka_queue_utilization.labels(self.name).set(min(1.0, queued / self.config.queue_size))

    # -- reporting -----------------------------------------------------------------------------
    def health(self) -> SinkHealth:
        status: Status = "healthy"
        message = "OK"
        if self._fatal:
            status, message = "unhealthy", f"fatal producer error, recreating the producer: {self._fatal}"
        elif self._all_down:
            status, message = "unhealthy", f"no broker reachable; last error: {self._last_error}"
        elif self._retries or self._solo:
            status = "degraded"
            waiting = len(self._retries) + len(self._solo)
            message = f"{waiting} records waiting to be retried; last error: {self._last_error}"
        return SinkHealth(
            self.name,
            status,
            message,
            details={"outstanding": self.outstanding, "brokers": dict(self._stats.brokers_up)},
        )

    def stats(self) -> dict[str, object]:
        return {
            "produced": self.produced,
            "delivered": self.delivered,
            "parked": self.parked,
            "retried": self.retried,
            "outstanding": self.outstanding,
            "retry_queue": len(self._retries) + len(self._solo),
            "producer_recreated": self.recreated,
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
