"""Replaying parked entries to Kafka, for the reprocessor and ``log-capturer dlq replay``.

An entry is removed from the store only after Kafka acknowledged its record;
a failed replay counts an attempt and pushes the entry's
``next_reprocess_time`` back (exponential delay). A crash between the
acknowledgement and the removal replays it again: at-least-once.

One replay at a time per directory: :func:`replay_lock` takes a non-blocking
``flock`` on ``<directory>/.replay.lock`` (so the agent's reprocessor and a
``dlq replay`` command never send the same entry twice at once).

:func:`produce_replay` is the one way records are replayed, whether through the
agent's Kafka sink (its producer, the reprocessor and ``POST /dlq/reprocess``)
or through a producer of the command's own (:class:`ProducerTarget`): the same
checks, the configured headers, the same error texts.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from log_capturer.reliability.dlq.store import DeadLetterStore, DLQWriteError
from log_capturer.sinks.kafka.client import close_producer, producer_config
from log_capturer.sinks.kafka.config import KafkaSinkConfig
from log_capturer.sinks.kafka.delivery import Disposition, classify, error_type
from log_capturer.sinks.kafka.headers import Headers, headers_of_record

REPLAY_LOCK = ".replay.lock"


class ReplayBusy(RuntimeError):
    """Another process or thread is replaying this DLQ directory."""


@dataclass(frozen=True)
class ReplayRecord:
    entry_id: str
    topic: str
    key: str | None
    value: bytes
    #: The sink that parked it (the entry's ``failed_sink``): the one that replays it.
    sink: str = ""
    #: The headers it was sent with (None: those the config asks for, read from its JSON).
    headers: Headers | None = None


class ReplayTarget(Protocol):
    def replay_blocker(self) -> str:
        """'' when records can be replayed now, else the reason they cannot (e.g. breaker open)."""

    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        """Send ``records``; entry_id -> None when Kafka acknowledged it, else the error."""


@dataclass
class ReplayResult:
    attempted: int = 0
    delivered: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempted": self.attempted,
            "delivered": self.delivered,
            "failed": self.failed,
            "errors": dict(self.errors.most_common(10)),
        }


def record_of(doc: dict[str, Any]) -> ReplayRecord:
    """The record of an entry, as it was sent: its exact bytes when the entry kept them
    (``value``, ``value_base64``: raw and logfmt records), else its JSON record; its headers."""
    key = doc.get("key")
    text, b64 = doc.get("value"), doc.get("value_base64")
    if isinstance(text, str):
        value = text.encode("utf-8", "surrogatepass")
    elif isinstance(b64, str):
        try:
            value = base64.b64decode(b64, validate=True)
        except ValueError:
            value = orjson.dumps(doc.get("original_entry", {}))
    else:
        value = orjson.dumps(doc.get("original_entry", {}))
    raw_headers = doc.get("headers")
    headers: Headers | None = None
    if isinstance(raw_headers, list):
        headers = [
            (str(h[0]), h[1].encode("utf-8", "surrogatepass") if isinstance(h[1], str) else None)
            for h in raw_headers
            if isinstance(h, list) and len(h) == 2
        ]
    return ReplayRecord(
        str(doc.get("entry_id", "")),
        str(doc.get("topic") or ""),
        key if isinstance(key, str) else None,
        value,
        str(doc.get("failed_sink") or ""),
        headers,
    )


@contextlib.contextmanager
def replay_lock(store: DeadLetterStore) -> Iterator[None]:
    """Hold the directory's replay lock, or raise :class:`ReplayBusy`."""
    try:
        store.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(store.directory / REPLAY_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DLQWriteError(exc.errno, f"cannot use the DLQ directory {store.directory}: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReplayBusy(f"another replay of {store.directory} is running") from None
        yield
    finally:
        os.close(fd)


def replay_entries(
    store: DeadLetterStore,
    target: ReplayTarget,
    entries: list[dict[str, Any]],
    *,
    batch_size: int,
    timeout: float,
    count_attempt: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay ``entries`` in batches; the store is updated after each batch."""
    result = ReplayResult()
    for start in range(0, len(entries), batch_size):
        batch = [record_of(d) for d in entries[start : start + batch_size]]
        outcome = target.replay(batch, timeout)
        delivered = {eid for eid, err in outcome.items() if err is None}
        failed = {eid: err for eid, err in outcome.items() if err is not None}
        store.settle(delivered, failed, count_attempt=count_attempt)
        result.attempted += len(batch)
        result.delivered += len(delivered)
        result.failed += len(failed)
        result.errors.update(failed.values())
        if progress is not None:
            progress(len(batch))
    return result


#: Produces one record: (topic, value, key, on_delivery=..., headers=...), as Producer.produce.
Produce = Callable[..., None]
#: Reports the outcome of one replayed record: None when Kafka acknowledged it.
OnReport = Callable[[ReplayRecord, KafkaError | None], None]


def describe(err: KafkaError) -> str:
    """A delivery error as replay results and DLQ entries show it: ``error_type: message``."""
    return f"{error_type(err)}: {err.str()}"


def produce_replay(
    produce: Produce,
    records: list[ReplayRecord],
    timeout: float,
    *,
    config: KafkaSinkConfig,
    serve: Callable[[float], None],
    stopping: Callable[[], bool] = lambda: False,
    on_report: OnReport | None = None,
) -> dict[str, str | None]:
    """Produce ``records`` again, with the configured headers, and wait up to ``timeout`` for
    their delivery reports. ``serve(t)`` lets up to ``t`` seconds pass while reports are served
    (polls the producer, or waits for the thread that does). Returns entry_id -> None once Kafka
    acknowledged it, else why not (a record that cannot be sent as it is, a producer that refused
    it until the deadline, an error, or no report in time)."""
    outcome: dict[str, str | None] = {}
    lock = threading.Lock()
    waiting = [0]

    def report(rec: ReplayRecord, err: KafkaError | None, _msg: Message) -> None:
        with lock:
            outcome[rec.entry_id] = None if err is None else describe(err)
            waiting[0] -= 1
        if on_report is not None:
            on_report(rec, err)

    deadline = time.monotonic() + timeout
    for rec in records:
        problem = check_record(rec, config.max_message_bytes)
        if problem:
            outcome[rec.entry_id] = problem
            continue
        headers: Headers | None = (
            rec.headers if rec.headers is not None else headers_of_record(config.headers, rec.value)
        )
        with lock:
            waiting[0] += 1
        while True:
            try:
                produce(
                    rec.topic, rec.value, rec.key, on_delivery=functools.partial(report, rec), headers=headers
                )
                break
            except (BufferError, KafkaException) as exc:
                err = exc.args[0] if isinstance(exc, KafkaException) else None
                permanent = isinstance(err, KafkaError) and classify(err) is Disposition.PERMANENT
                if permanent or time.monotonic() > deadline or stopping():
                    why = describe(err) if isinstance(err, KafkaError) else "the producer queue stayed full"
                    with lock:
                        waiting[0] -= 1
                        outcome[rec.entry_id] = f"could not be produced: {why}"
                    break
                serve(0.1)
    while True:
        with lock:
            if waiting[0] <= 0:
                break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        serve(min(0.1, left))
    with lock:
        result = dict(outcome)
    for rec in records:
        result.setdefault(rec.entry_id, f"not acknowledged within {timeout:g}s")
    return result


class ProducerTarget:
    """Replays through a producer of its own (``log-capturer dlq replay``, outside the agent)."""

    def __init__(self, config: KafkaSinkConfig) -> None:
        self.config = config
        conf = producer_config(config, client_id="log-capturer-dlq-replay")
        self.producer = Producer(conf)

    def replay_blocker(self) -> str:
        return ""

    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        return produce_replay(self.producer.produce, records, timeout, config=self.config, serve=self._serve)

    def _serve(self, timeout: float) -> None:
        self.producer.poll(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush, then close the producer (``close_producer``); what is still unacknowledged
        stays in the DLQ."""
        self.producer.flush(timeout)
        close_producer(self.producer)


def check_record(rec: ReplayRecord, max_message_bytes: int) -> str:
    """Why ``rec`` cannot be sent as it is ('' if it can)."""
    if not rec.topic:
        return "the entry names no topic"
    if len(rec.value) > max_message_bytes:
        return (
            f"record of {len(rec.value)} bytes still exceeds max_message_bytes={max_message_bytes} "
            "(raise sinks.kafka.max_message_bytes, and the topic's max.message.bytes, then replay)"
        )
    return ""
