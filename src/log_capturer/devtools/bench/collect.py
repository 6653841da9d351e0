"""The benchmark's independent consumer: reads the run's topics and accounts for every line.

Each record's ``message`` holds a generated line, which carries its sequence
number and emit time (:data:`~log_capturer.devtools.generate.LINE_MARK`). The
collector counts each sequence number (lost = never seen, duplicated = seen
more than once), checks the level routing against the generator's own plan,
and keeps two latencies per record: emit -> broker append time (the topics use
``message.timestamp.type=LogAppendTime``) and emit -> the moment this consumer
received it (meaningful only when it reads while the agent runs).
"""

from __future__ import annotations

import re
import threading
import time
from array import array
from collections import Counter
from datetime import datetime
from typing import Any

from log_capturer.devtools.generate import LINE_MARK, LineFactory

#: librdkafka's code for "the broker set this timestamp when it appended the record".
TIMESTAMP_LOG_APPEND_TIME = 2


class Collector:
    """Consumes ``topics`` from their beginning; ``expected`` lines have seq 0..expected-1."""

    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        expected: int,
        t0: float,
        factory: LineFactory | None = None,
        topic_of_level: dict[str, str] | None = None,
        dlq_topic: str | None = None,
        read_committed: bool = False,
    ) -> None:
        """``read_committed``: the agent writes in transactions (``delivery: exactly_once``): read
        only committed records, and take a partition's end from its EOF event (its last offsets
        are transaction markers, which are never delivered)."""
        from confluent_kafka import Consumer, TopicPartition

        self.expected = expected
        self.t0 = t0
        self.factory = factory
        self.topic_of_level = topic_of_level
        self.dlq_topic = dlq_topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-collector-{time.time_ns()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": read_committed,
                "isolation.level": "read_committed" if read_committed else "read_uncommitted",
                "fetch.wait.max.ms": 100,
                "client.id": "log-capturer-bench-collector",
            }
        )
        md = self._consumer.list_topics(timeout=30)
        self.partitions = [(t, p) for t in topics for p in md.topics[t].partitions]
        self._consumer.assign([TopicPartition(t, p, 0) for t, p in self.partitions])
        self._next_offset: dict[tuple[str, int], int] = dict.fromkeys(self.partitions, 0)
        self.counts = bytearray(expected)
        self.records = 0
        self.unique = 0
        self.foreign = 0  # records with no generated line in them, or a seq out of range
        self.misrouted = 0
        self.dlq_records = 0
        self.consumer_errors = 0
        self.non_append_timestamps = 0
        self.by_topic: Counter[str] = Counter()
        # Per record, relative to t0 (seconds) or in milliseconds; float32 keeps millions small.
        self.emit_rel = array("f")
        self.append_rel = array("f")
        self.lat_append_ms = array("f")
        self.lat_consume_ms = array("f")
        self.first_append_ms: int | None = None
        self.last_append_ms: int | None = None
        self._emit_cache: dict[bytes, float] = {}

    # -- reading -----------------------------------------------------------------------------------
    def poll(self, max_messages: int = 1000, timeout: float = 0.002) -> int:
        """Read what is available now (waiting at most ``timeout``); return the records handled."""
        msgs = self._consumer.consume(max_messages, timeout)
        received = time.time()
        if not msgs:
            return 0
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == _PARTITION_EOF:
                    key = (str(m.topic()), int(m.partition() or 0))
                    self._next_offset[key] = max(self._next_offset[key], int(m.offset() or 0))
                else:
                    self.consumer_errors += 1
                continue
            self._handle(m, received)
        return len(msgs)

    def _handle(self, m: Any, received: float) -> None:
        topic = m.topic()
        part = m.partition()
        self._next_offset[(topic, part)] = m.offset() + 1
        self.records += 1
        self.by_topic[topic] += 1
        if topic == self.dlq_topic:
            self.dlq_records += 1
            return
        found = LINE_MARK.search(m.value() or b"")
        if found is None:
            self.foreign += 1
            return
        seq = int(found.group(2))
        if seq >= self.expected:
            self.foreign += 1
            return
        count = self.counts[seq]
        if count == 0:
            self.unique += 1
        if count < 255:
            self.counts[seq] = count + 1
        emit = self._emit_cache.get(found.group(1))
        if emit is None:
            emit = datetime.fromisoformat(found.group(1).decode() + "+00:00").timestamp()
            self._emit_cache[found.group(1)] = emit
        ts_type, ts_ms = m.timestamp()
        if ts_type != TIMESTAMP_LOG_APPEND_TIME:
            self.non_append_timestamps += 1
        if self.first_append_ms is None or ts_ms < self.first_append_ms:
            self.first_append_ms = ts_ms
        if self.last_append_ms is None or ts_ms > self.last_append_ms:
            self.last_append_ms = ts_ms
        self.emit_rel.append(emit - self.t0)
        self.append_rel.append(ts_ms / 1000.0 - self.t0)
        self.lat_append_ms.append(ts_ms - emit * 1000.0)
        self.lat_consume_ms.append((received - emit) * 1000.0)
        if self.factory is not None and self.topic_of_level is not None:
            want = self.topic_of_level.get(self.factory.level_of(seq))
            if want is not None and want != topic:
                self.misrouted += 1

    def run(self, stop: threading.Event) -> None:
        """Read continuously until ``stop`` is set (the live mode, in a thread)."""
        while not stop.is_set():
            self.poll()

    def high_watermarks(self) -> dict[tuple[str, int], int]:
        from confluent_kafka import TopicPartition

        return {
            (t, p): self._consumer.get_watermark_offsets(TopicPartition(t, p), timeout=30, cached=False)[1]
            for t, p in self.partitions
        }

    def drain(self, timeout: float, progress: Any = None) -> bool:
        """Read every partition up to its current high watermark; False if ``timeout`` ran out."""
        highs = self.high_watermarks()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._next_offset[tp] >= h for tp, h in highs.items()):
                return True
            self.poll(10_000, 0.5)
            if progress is not None:
                progress(self)
        return all(self._next_offset[tp] >= h for tp, h in highs.items())

    def close(self) -> None:
        self._consumer.close()

    # -- results ------------------------------------------------------------------------------------
    @property
    def lost(self) -> int:
        return self.expected - self.unique

    @property
    def duplicated(self) -> int:
        """Records beyond the first of each sequence number."""
        return len(self.lat_append_ms) - self.unique

    def missing_ranges(self, limit: int = 20) -> list[tuple[int, int]]:
        """The first ``limit`` runs of sequence numbers never seen, as (first, last)."""
        runs = _ZERO_RUNS.finditer(self.counts)
        return [(m.start(), m.end() - 1) for _, m in zip(range(limit), runs, strict=False)]


_ZERO_RUNS = re.compile(rb"\x00+")
#: confluent_kafka.KafkaError._PARTITION_EOF (the module is imported where it is used).
_PARTITION_EOF = -191
