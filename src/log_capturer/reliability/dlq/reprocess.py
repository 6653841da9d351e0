"""Automatic reprocessing of the local DLQ (``dispatcher.dlq_config.reprocessing_config``).

Every ``interval`` the reprocessor removes expired entries, then, if the sink
can take records (breaker closed, a broker reachable), replays due entries
(parked at least ``min_entry_age`` ago, whose ``next_reprocess_time`` passed,
with fewer than ``max_retries`` attempts) in batches of ``batch_size``, each
waiting up to ``timeout`` for Kafka's acknowledgements. It goes on with the
next batch while every record of the last one was delivered, so a recovered
Kafka drains the store quickly; a batch with a failure ends the round. A
failed replay multiplies the entry's delay by ``delay_multiplier`` (from
``initial_delay``, capped at ``max_delay``). ``POST /dlq/reprocess`` runs a
round at once.

A round skipped while entries wait (the breaker is open, no broker is reachable...) says why in
the log: the first time, whenever the reason changes, and every ``SKIP_LOG_EVERY`` seconds while
it lasts, so a store that does not drain never does so silently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from log_capturer.observability.metrics import Metrics
from log_capturer.reliability.config import ReprocessingConfig
from log_capturer.reliability.dlq.replay import (
    ReplayBusy,
    ReplayResult,
    ReplayTarget,
    replay_entries,
    replay_lock,
)
from log_capturer.reliability.dlq.store import DeadLetterStore, DLQWriteError, iso

log = logging.getLogger(__name__)

#: While rounds keep being skipped for the same reason with entries waiting, the reason is logged
#: again this often (seconds).
SKIP_LOG_EVERY = 60.0


class Reprocessor:
    def __init__(
        self,
        store: DeadLetterStore,
        config: ReprocessingConfig,
        target: ReplayTarget,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.config = config
        self.target = target
        self.metrics = metrics
        self._round = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.delivered = 0
        self.failed = 0
        self.last_round: dict[str, Any] = {}
        self._clock = clock
        #: The skip reason last logged ('' after a round that ran), and when.
        self._skip_logged = ""
        self._skip_logged_at = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dlq-reprocess", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.config.timeout + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self.config.interval):
            try:
                self.run_once()
            except Exception:
                log.exception("DLQ reprocessing round failed")
                self.metrics.errors.labels("dlq", "reprocess_failed").inc()

    def run_once(self, *, everything: bool = False) -> dict[str, Any]:
        """One round. ``everything``: all entries (also not yet due or out of retries), in batches,
        until done or ``timeout`` per batch runs out; otherwise up to ``batch_size`` due entries."""
        with self._round:
            started = time.time()
            summary: dict[str, Any] = {"started": iso(started), "status": "completed"}
            try:
                summary["expired"] = self.store.expire()
                blocker = self.target.replay_blocker()
                if blocker:
                    summary.update(status="skipped", reason=blocker)
                    return self._done(summary)
                with replay_lock(self.store):
                    result = self._replay(everything)
            except ReplayBusy as exc:
                summary.update(status="skipped", reason=str(exc))
                return self._done(summary)
            except DLQWriteError as exc:
                summary.update(status="failed", reason=str(exc))
                return self._done(summary)
            summary.update(result.as_dict())
            self.delivered += result.delivered
            self.failed += result.failed
            if result.delivered:
                self.metrics.dlq_reprocessed.labels("delivered").inc(result.delivered)
            if result.failed:
                self.metrics.dlq_reprocessed.labels("failed").inc(result.failed)
            if result.attempted:
                log.info(
                    "DLQ reprocessing: %d of %d entries delivered",
                    result.delivered,
                    result.attempted,
                    extra={"failed": result.failed, "errors": dict(result.errors.most_common(3))},
                )
            return self._done(summary)

    def _replay(self, everything: bool) -> ReplayResult:
        cfg = self.config
        if everything:
            entries = self.store.select(due_only=False, replayable=True)
            return replay_entries(
                self.store, self.target, entries, batch_size=cfg.batch_size, timeout=cfg.timeout
            )
        total = ReplayResult()
        while not self._stop.is_set():
            entries = self.store.select(limit=cfg.batch_size)
            if not entries:
                break
            result = replay_entries(
                self.store, self.target, entries, batch_size=cfg.batch_size, timeout=cfg.timeout
            )
            total.attempted += result.attempted
            total.delivered += result.delivered
            total.failed += result.failed
            total.errors.update(result.errors)
            if result.failed or self.target.replay_blocker():
                break
        return total

    def _done(self, summary: dict[str, Any]) -> dict[str, Any]:
        self.rounds += 1
        remaining = summary["remaining"] = self.store.stats()["entries"]
        self.last_round = summary
        if summary["status"] == "skipped" and remaining:
            self._log_skip(str(summary.get("reason", "")), remaining)
        elif summary["status"] != "skipped":
            self._skip_logged = ""
        return summary

    def _log_skip(self, reason: str, remaining: int) -> None:
        now = self._clock()
        if reason == self._skip_logged and now - self._skip_logged_at < SKIP_LOG_EVERY:
            return
        self._skip_logged, self._skip_logged_at = reason, now
        log.info(
            "DLQ reprocessing waits: %s (%d entries parked)",
            reason,
            remaining,
            extra={"reason": reason, "entries": remaining},
        )

    def status(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "interval_seconds": self.config.interval,
            "rounds": self.rounds,
            "delivered_total": self.delivered,
            "failed_total": self.failed,
            "last_round": self.last_round,
        }
