"""Supervision of the sources: a crashed read loop is restarted with back-off, and ``/health`` says so.

A source reads in a thread of its own (the tailers, ``docker-events``, the
syslog loop, stdin). An unexpected exception there used to end the thread: the
source stopped reading and ``/health`` still said ``healthy``. A
:class:`Supervisor` runs the loop instead (:meth:`Supervisor.run`); when it
raises, the supervisor

- logs the exception with its traceback and counts
  ``errors_total{component=<source>, error_type="crash"}``;
- reports the source ``degraded``, with the error, the number of restarts and
  since when (``unhealthy`` after :data:`UNHEALTHY_AFTER` crashes in a row
  without one successful turn in between: restarting does not help);
- waits (:class:`Backoff`: 1 s, doubling up to 30 s; back to 1 s once a run
  lasted :data:`STABLE_AFTER`), a stop ending the wait, and calls the loop again,
  after the source's ``recover`` hook (the tailer reads again from the end
  of the last chunk it handed to the dispatcher, so nothing is skipped or sent
  twice).

The loop calls :meth:`Supervisor.ok` after each successful turn: the source is
``healthy`` again. :class:`QueueClosed` (the agent is stopping) and a loop that
returns are normal ends. A thread ended by something that is not an
``Exception`` (``SystemExit``) is not restarted: ``unhealthy``.

Handlers that run on another component's loop (HTTP ingest's request handler,
the syslog protocol callbacks) report with :meth:`Supervisor.crashed` and
:meth:`Supervisor.ok`; the next request or message runs anyway, so nothing is
restarted there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import QueueClosed
from log_capturer.sinks.base import Status

log = logging.getLogger(__name__)

#: The first wait before a restart; it doubles per crash up to MAX_BACKOFF.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
#: A loop that ran at least this long before it crashed is restarted after FIRST_BACKOFF again.
STABLE_AFTER = 60.0
#: Crashes in a row (no successful turn in between) from which the source is reported unhealthy.
UNHEALTHY_AFTER = 5


class Backoff:
    """Waits between restarts: ``first``, doubling per call up to ``maximum``, until :meth:`reset`."""

    def __init__(self, first: float = FIRST_BACKOFF, maximum: float = MAX_BACKOFF) -> None:
        self.first = first
        self.maximum = maximum
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(delay * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.first


def describe(exc: BaseException) -> str:
    """``ValueError: bad value`` (the type alone when the exception has no text)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Supervisor:
    """Runs one source loop, restarts it after a crash, and keeps the state ``/health`` reports.

    ``component`` is the source's name in ``/health`` and in ``errors_total``
    (``file_source``, ``syslog_source``, ...).
    """

    def __init__(self, component: str, metrics: Metrics, backoff: Backoff | None = None) -> None:
        self.component = component
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self._lock = threading.Lock()
        self.status: Status = "healthy"
        #: Wall-clock time the current status began.
        self.since = time.time()
        self.crashes = 0
        self.restarts = 0
        #: Crashes since the last successful turn.
        self.in_a_row = 0
        self.last_error = ""
        self.last_crash = 0.0
        #: Set when the thread ended without being asked to (not restarted).
        self.ended = ""

    # -- reporting from the loop -------------------------------------------------------------------
    def ok(self) -> None:
        """A successful turn. Cheap when nothing crashed (called on every turn of a busy loop)."""
        if not self.in_a_row:
            return
        with self._lock:
            if not self.in_a_row or self.ended:
                return
            self.in_a_row = 0
            self._set("healthy")
        log.info(
            "%s running again", self.component, extra={"component": self.component, "restarts": self.restarts}
        )

    def crashed(self, exc: BaseException, then: str = "") -> None:
        """Log ``exc`` with its traceback, count it, and report the source degraded (or unhealthy)."""
        error = describe(exc)
        with self._lock:
            self.crashes += 1
            self.in_a_row += 1
            self.last_error = error
            self.last_crash = time.time()
            self._set("unhealthy" if self.in_a_row >= UNHEALTHY_AFTER else "degraded")
            in_a_row = self.in_a_row
        self.metrics.errors.labels(self.component, "crash").inc()
        log.error(
            "%s crashed (thread %s): %s%s",
            self.component,
            threading.current_thread().name,
            error,
            f"; {then}" if then else "",
            exc_info=exc,
            extra={"component": self.component, "crashes_in_a_row": in_a_row, "restarts": self.restarts},
        )

    def _set(self, status: Status) -> None:
        if status != self.status:
            self.status = status
            self.since = time.time()

    # -- running a loop ----------------------------------------------------------------------------
    def run(
        self, loop: Callable[[], None], stop: threading.Event, recover: Callable[[], None] | None = None
    ) -> None:
        """The thread's body: ``loop()`` until it returns, restarted after each crash.

        ``recover`` runs before each restart, in this thread (a crash there is
        one more crash). A stop during the wait ends it without a restart.
        """
        restart = False
        try:
            while True:
                started = time.monotonic()
                try:
                    if restart and recover is not None:
                        recover()
                    loop()
                    return
                except QueueClosed:
                    return
                except Exception as exc:
                    if stop.is_set():
                        self.crashed(exc, "not restarted: the source is stopping")
                        return
                    if time.monotonic() - started >= STABLE_AFTER:
                        self.backoff.reset()
                    delay = self.backoff.next()
                    self.crashed(exc, f"restarting in {delay:g}s")
                if stop.wait(delay):  # only reached after a crash: every other path returned
                    return
                with self._lock:
                    self.restarts += 1
                restart = True
                log.info("%s restarting", self.component, extra={"restarts": self.restarts})
        except BaseException as exc:
            if not stop.is_set():
                with self._lock:
                    self.ended = describe(exc)
                    self._set("unhealthy")
                log.error("%s stopped: %s; not restarted", self.component, describe(exc), exc_info=exc)
            raise

    # -- /health -----------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``status``, ``since``, ``restarts``, ``crashes``; after a crash ``last_error`` and
        ``last_crash``; while not healthy ``message``."""
        with self._lock:
            out: dict[str, Any] = {
                "status": self.status,
                "since": _iso(self.since),
                "restarts": self.restarts,
                "crashes": self.crashes,
            }
            if self.last_error:
                out["last_error"] = self.last_error
                out["last_crash"] = _iso(self.last_crash)
            if self.ended:
                out["message"] = f"stopped: {self.ended}; not restarted"
            elif self.in_a_row:
                times = "" if self.in_a_row == 1 else f" {self.in_a_row} times in a row"
                out["message"] = f"crashed{times}: {self.last_error}; restarts: {self.restarts}"
        return out
