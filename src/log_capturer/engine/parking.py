"""Parking records in the local dead-letter store (``dispatcher.dlq_config``), for every sink.

A record is parked with its reason (the entry's ``error_type``: ``message_too_large``,
``send_error``, ``timeout``, ``backpressure``, ``circuit_open``, ``processing_error``,
``all_sinks_failed``...) and the error text, as the record it would have been sent as, so a
replay sends exactly that. Parking is durable (the store fsyncs) before the record counts as
acknowledged. When the store refuses (unwritable, full), the records stay unacknowledged and
parking is tried again; /health says so meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from log_capturer.engine.contract import Headers
from log_capturer.observability.metrics import Metrics
from log_capturer.reliability.dlq import DeadLetterStore, DLQEntry, DLQWriteError

log = logging.getLogger(__name__)

#: Waits of a sender whose records the store refuses: 0.5 s doubling up to this.
PARK_MAX_DELAY = 5.0
#: The error of a refused write is logged at most once per this many seconds.
LOG_EVERY = 10.0


class Parking:
    """Writes a sink's records to the local store and counts them (thread-safe)."""

    def __init__(
        self, store: DeadLetterStore | None, metrics: Metrics, sink_name: str, sink_type: str
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.sink_name = sink_name
        self.sink_type = sink_type
        self._lock = threading.Lock()
        #: Every record parked; ``overflowed`` is the part that overflowed before it was produced.
        self.parked = 0
        self.overflowed = 0
        #: Why the last write was refused ('' once one succeeds), for /health.
        self.error = ""
        self._error_logged = 0.0

    def entry(
        self,
        value: bytes,
        topic: str,
        key: str | bytes | None,
        etype: str,
        msg: str,
        retries: int = 0,
        headers: Headers | None = None,
    ) -> DLQEntry:
        """The entry of a record: the record as it would have been sent (its JSON; or, when the
        JSON would not give back the same bytes, its text and its exact bytes), and its headers."""
        exact: bytes | None = None
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            original: dict[str, Any] = doc
            if orjson.dumps(doc) != value:
                exact = value  # JSON, but not as orjson writes it: replayed as it was
        else:
            original = {"raw": value.decode("utf-8", "backslashreplace")}
            exact = value
        k = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key
        return DLQEntry(
            original,
            msg,
            etype,
            self.sink_name,
            topic=topic,
            key=k,
            retry_count=retries,
            value=exact,
            headers=list(headers) if headers else None,
        )

    def park(
        self,
        entries: list[DLQEntry],
        *,
        wait: Callable[[float], bool] | None = None,
        overflow: bool = False,
    ) -> bool:
        """Park ``entries`` durably and count them (``overflow``: lines that overflowed before
        being produced). With ``wait``, keep trying while the store refuses: ``wait(delay)``
        sleeps and returns True when the sink is stopping (then False is returned). Without it,
        False at the first refusal."""
        if not entries:
            return True
        delay = 0.5
        while True:
            try:
                if self.store is None:
                    raise DLQWriteError(0, "the local DLQ is disabled (dispatcher.dlq_config.enabled)")
                self.store.park(entries)
                break
            except DLQWriteError as exc:
                self._failed(exc, len(entries))
                if wait is None or wait(delay):
                    return False
                delay = min(delay * 2, PARK_MAX_DELAY)
        self.error = ""
        for e in entries:
            self.metrics.kafka_dlq_messages.labels(e.topic, e.error_type).inc()
        self.metrics.logs_sent.labels(self.sink_type, "dlq").inc(len(entries))
        with self._lock:
            self.parked += len(entries)
            if overflow:
                self.overflowed += len(entries)
        first = entries[0]
        log.warning(
            "%d records parked in the local DLQ: %s",
            len(entries),
            first.error_message,
            extra={"sink": self.sink_name, "topic": first.topic, "reason": first.error_type},
        )
        return True

    def _failed(self, exc: DLQWriteError, count: int) -> None:
        self.error = str(exc)
        now = time.monotonic()
        if now - self._error_logged >= LOG_EVERY:
            self._error_logged = now
            log.error(
                "cannot park %d records in the local DLQ; they stay unacknowledged and are tried again: %s",
                count,
                exc,
                extra={"sink": self.sink_name},
            )
