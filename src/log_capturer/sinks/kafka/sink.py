"""The Kafka sink: confluent-kafka (librdkafka) with delivery-report acknowledgements.

Threads: the dispatcher worker calls :meth:`KafkaSink.send`, which encodes and
produces; one poll thread serves every delivery report, runs retries and
samples statistics. All per-record bookkeeping happens on the poll thread, so
it needs no locks; the sender hands it adjustments through a deque.

A record's fate is always one of: delivered (the chunk is acknowledged),
retried (re-produced after a back-off, as often as needed, so a broker
outage longer than ``timeout`` loses nothing), or parked in the dead-letter
store (permanent errors and oversize records), which also acknowledges it.
"""

from __future__ import annotations

import collections
import functools
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from log_capturer.config.schema import KafkaSinkConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk
from log_capturer.reliability.dlq import DeadLetterStore, DLQEntry, DLQWriteError
from log_capturer.sinks.base import SinkHealth, Status
from log_capturer.sinks.kafka.config import producer_config, redacted
from log_capturer.sinks.kafka.encode import encode_chunk
from log_capturer.sinks.kafka.errors import Disposition, classify, dlq_reason, error_type

log = logging.getLogger(__name__)

HIGH = frozenset({"error", "fatal", "critical"})
NORMAL = frozenset({"warn", "info"})
LOW = frozenset({"debug", "trace"})
RETRY_MAX_DELAY = 30.0


class _Delivery:
    """One chunk's records in flight. Touched only by the poll thread."""

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
            self.sink._failed(self, err, msg.topic() or "", msg.value() or b"", msg.key(), 0)

    def settle(self, n: int) -> None:
        self.remaining -= n
        if self.remaining == 0:
            self.sink._finished(self)


@dataclass(order=True)
class _Retry:
    due: float
    seq: int
    delivery: _Delivery = field(compare=False)
    topic: str = field(compare=False)
    value: bytes = field(compare=False)
    key: bytes | None = field(compare=False)
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
        routing = config.priority_routing
        default = config.topic
        self._topic_of: dict[str, str] = {}
        for lvl in ("", "trace", "debug", "info", "warn", "error", "fatal", "critical"):
            if not routing.enabled:
                self._topic_of[lvl] = default
            elif lvl in HIGH:
                self._topic_of[lvl] = routing.high_topic
            elif lvl in NORMAL:
                self._topic_of[lvl] = routing.normal_topic
            elif lvl in LOW:
                self._topic_of[lvl] = routing.low_topic
            else:
                self._topic_of[lvl] = default
        part = config.partitioning
        self._key_field = part.key_field if part.enabled else None
        self._settle: collections.deque[tuple[_Delivery, int]] = collections.deque()
        self._retries: list[_Retry] = []
        self._seq = itertools.count()
        self._space = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Counters: each is written by one thread only.
        self.produced = 0  # sender
        self.finished = 0  # poll thread
        self.delivered = 0  # poll thread
        self.parked = 0  # poll thread
        self.retried = 0  # poll thread
        self.delivered_by_topic: dict[str, int] = {}  # poll thread
        self._last_error = ""
        self._last_error_at = 0.0
        self._brokers_up: dict[str, bool] = {}
        self._all_down = False
        self._fatal = ""
        self._flush_requested = False

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        log.info(
            "Kafka sink initialized",
            extra={"sink": self.name, "producer_config": redacted(producer_config(self.config))},
        )
        self._producer = self._factory(self._conf)
        for b in self.config.brokers:
            self.metrics.kafka_connection_status.labels(b, self.name).set(0)
        self._thread = threading.Thread(target=self._poll_loop, name=f"{self.name}-poll", daemon=True)
        self._thread.start()

    @property
    def outstanding(self) -> int:
        return self.produced - self.finished

    def flush(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.outstanding > 0 and time.monotonic() < deadline:
            # Ask the poll thread to send what lingers now instead of waiting for linger.ms.
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
        assert self._producer is not None, "start() first"
        topic_of = self._topic_of
        max_bytes = self.config.max_message_bytes
        label_key_field = self._key_field
        for chunk in chunks:
            levels = chunk.levels
            topic_counts = collections.Counter(map(topic_of.__getitem__, levels))
            delivery = _Delivery(self, chunk, topic_counts)
            cb = delivery.on_delivery
            origin = chunk.origin
            default_key = origin.source_id
            if label_key_field is not None and label_key_field in origin.labels:
                default_key = origin.labels[label_key_field]
            keys = chunk.keys if label_key_field is not None else None
            values = encode_chunk(chunk, label_key_field)
            parked: list[DLQEntry] = []
            produce = self._producer.produce
            for i, value in enumerate(values):
                topic = topic_of[levels[i]]
                key = default_key
                if keys is not None and keys[i] is not None:
                    key = keys[i]  # type: ignore[assignment]
                if label_key_field is None:
                    key = None  # type: ignore[assignment]
                if len(value) > max_bytes:
                    parked.append(
                        self._entry(
                            value,
                            topic,
                            key,
                            "message_too_large",
                            f"record of {len(value)} bytes exceeds max_message_bytes={max_bytes}",
                        )
                    )
                    continue
                try:
                    produce(topic, value, key, on_delivery=cb)
                except BufferError:
                    self._produce_blocking(topic, value, key, cb)
            self.produced += len(values)
            if parked and not self._park_now(parked):
                # Stopping while the DLQ refuses writes: these lines stay unacknowledged, so the
                # chunk is never checkpointed and a restart reads it again.
                continue
            for e in parked:
                topic_counts[e.topic] -= 1
            self._settle.append((delivery, len(parked)))

    def _produce_blocking(
        self, topic: str, value: bytes, key: str | None, cb: Callable[[KafkaError | None, Message], None]
    ) -> None:
        """The producer queue is full: wait for delivery reports to make room (backpressure)."""
        assert self._producer is not None
        while True:
            self._space.clear()
            try:
                self._producer.produce(topic, value, key, on_delivery=cb)
                return
            except BufferError:
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
        """Park oversize records found while sending; waits until the store accepts them.

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
        self.metrics.logs_sent.labels(self.sink_type, "dlq").inc(len(entries))
        return True

    # -- poll thread ---------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        assert self._producer is not None
        last_gauges = 0.0
        while not self._stop.is_set():
            served = self._producer.poll(0.05)
            if served:
                self._space.set()
            while self._settle:
                delivery, parked = self._settle.popleft()
                delivery.failed += parked
                self.parked += parked
                delivery.settle(parked + 1)
            if self._flush_requested:
                self._flush_requested = False
                self._producer.flush(0)
            if self._retries:
                self._run_due_retries()
            now = time.monotonic()
            if now - last_gauges >= 1.0:
                last_gauges = now
                self._update_gauges()

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
        m.logs_sent.labels(self.sink_type, "success").inc(delivered)
        self._all_down = False
        d.chunk.ack(n)

    def _failed(
        self, d: _Delivery, err: KafkaError, topic: str, value: bytes, key: bytes | None, attempt: int
    ) -> None:
        disposition = classify(err)
        etype = error_type(err)
        self.metrics.kafka_producer_errors.labels(topic, etype).inc()
        self.metrics.kafka_messages_produced.labels(topic, "error").inc()
        self._note_error(f"{etype}: {err.str()}")
        if disposition is Disposition.PERMANENT:
            retry = _Retry(
                time.monotonic(),
                next(self._seq),
                d,
                topic,
                value,
                key,
                attempt,
                park_reason=dlq_reason(disposition),
                error=f"{etype}: {err.str()}",
            )
        else:
            delay = 0.0 if disposition is Disposition.TIMEOUT else min(0.25 * 2**attempt, RETRY_MAX_DELAY)
            retry = _Retry(time.monotonic() + delay, next(self._seq), d, topic, value, key, attempt + 1)
        heapq.heappush(self._retries, retry)

    def _run_due_retries(self) -> None:
        assert self._producer is not None
        now = time.monotonic()
        while self._retries and self._retries[0].due <= now:
            r = heapq.heappop(self._retries)
            if r.park_reason:
                if not self._park_from_poll(r):
                    return
                continue
            try:
                self._producer.produce(
                    r.topic,
                    r.value,
                    r.key,
                    on_delivery=functools.partial(self._retry_report, r),
                )
                self.retried += 1
            except BufferError:
                r.due = now + 0.05
                heapq.heappush(self._retries, r)
                return

    def _retry_report(self, r: _Retry, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            r.delivery.settle(1)
        else:
            self._failed(r.delivery, err, r.topic, r.value, r.key, r.attempt)

    def _park_from_poll(self, r: _Retry) -> bool:
        entry = self._entry(r.value, r.topic, r.key, r.park_reason, r.error, r.attempt)
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
        self.metrics.kafka_dlq_messages.labels(r.topic, r.park_reason).inc()
        self.metrics.logs_sent.labels(self.sink_type, "dlq").inc()
        r.delivery.failed += 1
        r.delivery.topics[r.topic] -= 1
        self.parked += 1
        r.delivery.settle(1)
        return True

    # -- librdkafka callbacks (poll thread) ----------------------------------------------------
    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._all_down = True
        if err.fatal():
            self._fatal = err.str()
        self._note_error(f"{error_type(err)}: {err.str()}")
        self.metrics.errors.labels("kafka", error_type(err)).inc()
        log.warning("Kafka client error: %s", err.str(), extra={"sink": self.name})

    def _on_stats(self, raw: str) -> None:
        stats = orjson.loads(raw)
        up: dict[str, bool] = {}
        for b in stats.get("brokers", {}).values():
            if b.get("nodeid", -1) < 0:
                continue  # bootstrap placeholder entries
            addr = f"{b.get('nodename', b.get('name', ''))}"
            up[addr] = b.get("state") == "UP"
        if up:
            self._brokers_up = up
            self._all_down = not any(up.values())
            for addr, ok in up.items():
                self.metrics.kafka_connection_status.labels(addr, self.name).set(1 if ok else 0)

    def _note_error(self, text: str) -> None:
        self._last_error = text
        self._last_error_at = time.time()

    def _update_gauges(self) -> None:
        assert self._producer is not None
        queued = len(self._producer)
        self.metrics.kafka_queue_size.labels(self.name).set(queued)
        self.metrics.kafka_queue_utilization.labels(self.name).set(min(1.0, queued / self.config.queue_size))

    # -- reporting -----------------------------------------------------------------------------
    def health(self) -> SinkHealth:
        status: Status = "healthy"
        message = "OK"
        if self._fatal:
            status, message = "unhealthy", f"fatal producer error: {self._fatal}"
        elif self._all_down:
            status, message = "unhealthy", f"all brokers down; last error: {self._last_error}"
        elif self._retries:
            status, message = (
                "degraded",
                f"{len(self._retries)} records waiting to be retried; last error: {self._last_error}",
            )
        return SinkHealth(
            self.name,
            status,
            message,
            details={"outstanding": self.outstanding, "brokers": self._brokers_up},
        )

    def stats(self) -> dict[str, object]:
        return {
            "produced": self.produced,
            "delivered": self.delivered,
            "parked": self.parked,
            "retried": self.retried,
            "outstanding": self.outstanding,
            "retry_queue": len(self._retries),
            "last_error": self._last_error,
        }
