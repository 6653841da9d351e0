"""A per-sink circuit breaker: closed -> open -> half-open -> closed.

- **closed**: calls go through. ``failure_threshold`` consecutive failures open it;
  a success resets the count.
- **open**: calls are refused for ``open_timeout`` seconds (the sink holds its
  lines or parks them, per config). Outcomes of calls made before it opened are
  ignored.
- **half-open**: at most ``half_open_max_calls`` trial calls are let through.
  ``success_threshold`` successes close it; one failure opens it again.

Thread-safe; :meth:`allow` and :meth:`record_success` cost an attribute check
while closed, so the sink can call them once per chunk on the hot path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import IntEnum


class BreakerState(IntEnum):
    """Values are those of the ``kafka_circuit_breaker_state`` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


#: on_change(old, new, reason)
ChangeCallback = Callable[[BreakerState, BreakerState, str], None]


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 10,
        success_threshold: int = 2,
        open_timeout: float = 60.0,
        half_open_max_calls: int = 10,
        on_change: ChangeCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.open_timeout = open_timeout
        self.half_open_max_calls = half_open_max_calls
        self.enabled = enabled
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self._trial_calls = 0
        self._trial_successes = 0
        self.opened_at = 0.0
        self.last_failure = ""
        self.times_opened = 0

    # -- queries ---------------------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose timeout passed reports (and becomes) half-open."""
        if self._state is BreakerState.OPEN and self._clock() - self.opened_at >= self.open_timeout:
            with self._lock:
                self._expire()
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is BreakerState.CLOSED

    def retry_in(self) -> float:
        """Seconds until an open breaker lets trial calls through (0 unless open)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.open_timeout - (self._clock() - self.opened_at))

    def snapshot(self) -> dict[str, object]:
        state = self.state
        return {
            "state": state.label,
            "consecutive_failures": self.consecutive_failures,
            "failure_threshold": self.failure_threshold,
            "times_opened": self.times_opened,
            "retry_in_seconds": round(self.retry_in(), 3),
            "trial_calls": self._trial_calls if state is BreakerState.HALF_OPEN else 0,
            "last_failure": self.last_failure,
        }

    # -- calls -----------------------------------------------------------------------------------
    def allow(self) -> bool:
        """May a call go through now? In half-open state this takes one of the trial permits."""
        if self._state is BreakerState.CLOSED:
            return True
        with self._lock:
            self._expire()
            state: BreakerState = self._state
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.OPEN:
                return False
            if self._trial_calls >= self.half_open_max_calls:
                return False
            self._trial_calls += 1
            return True

    def record_success(self) -> None:
        if self._state is BreakerState.CLOSED and not self.consecutive_failures:
            return
        with self._lock:
            if self._state is BreakerState.CLOSED:
                self.consecutive_failures = 0
            elif self._state is BreakerState.HALF_OPEN:
                self._trial_successes += 1
                if self._trial_successes >= self.success_threshold:
                    self._move(BreakerState.CLOSED, f"{self._trial_successes} trial calls succeeded")

    def record_failure(self, reason: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.last_failure = reason
            if self._state is BreakerState.CLOSED:
                self.consecutive_failures += 1
                if self.consecutive_failures >= self.failure_threshold:
                    self._open(f"{self.consecutive_failures} consecutive failures; last: {reason}")
            elif self._state is BreakerState.HALF_OPEN:
                self.consecutive_failures += 1
                self._open(f"a trial call failed: {reason}")

    def trip(self, reason: str) -> None:
        """Open now, whatever the count (a failure that is certain to repeat: the server refuses
        the sink's credentials). Trial calls start after the open timeout as usual."""
        if not self.enabled:
            return
        with self._lock:
            self.last_failure = reason
            if self._state is not BreakerState.OPEN:
                self.consecutive_failures += 1
                self._open(reason)

    # -- transitions (lock held) -----------------------------------------------------------------
    def _expire(self) -> None:
        if self._state is BreakerState.OPEN and self._clock() - self.opened_at >= self.open_timeout:
            self._trial_calls = 0
            self._trial_successes = 0
            self._move(BreakerState.HALF_OPEN, f"open for {self.open_timeout:g}s; trying again")

    def _open(self, reason: str) -> None:
        self.opened_at = self._clock()
        self.times_opened += 1
        self._move(BreakerState.OPEN, reason)

    def _move(self, new: BreakerState, reason: str) -> None:
        old = self._state
        self._state = new
        if new is BreakerState.CLOSED:
            self.consecutive_failures = 0
        if self._on_change is not None and old is not new:
            self._on_change(old, new, reason)
