"""Reporting outcomes to the runner: what the services of the HTTP and file sinks share.

A service tracks each record it holds as an item of one of three kinds: ``new`` (its ``owner`` is
the chunk's :class:`~.runner.Delivery`), ``attempt`` (a retry: its :class:`~.runner.Attempt`) or
``replay`` (a parked entry sent again: its ``owner`` is a :class:`ReplayWaiter`, with the entry's
``entry_id``). Its thread queues ``(item, failure, error_type, text)`` as answers come and calls
:func:`report_outcomes` in its engine round; delivered records of one chunk are counted in one
call.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from log_capturer.engine.contract import Failure, Record

if TYPE_CHECKING:
    from log_capturer.engine.runner import Delivery, SinkRunner


class Tracked(Protocol):
    """One record held by a service (see the module's docstring)."""

    @property
    def record(self) -> Record: ...
    @property
    def kind(self) -> str: ...
    @property
    def owner(self) -> Any: ...
    @property
    def entry_id(self) -> str: ...


#: What a service's thread queues for :func:`report_outcomes`.
Outcome = tuple[Tracked, Failure | None, str, str]


@dataclass
class ReplayWaiter:
    """One ``replay`` call waiting for its records' outcomes: entry id -> None (delivered) or why not."""

    results: dict[str, str | None] = field(default_factory=dict)
    expected: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def settle(
        self,
        runner: SinkRunner,
        entry_id: str,
        topic: str,
        failure: Failure | None,
        error_type: str,
        text: str,
    ) -> None:
        """One replayed record's outcome; the call returns once every record has one."""
        self.results[entry_id] = None if failure is None else text
        runner.replayed(topic, failure, error_type, text)
        if len(self.results) >= self.expected:
            self.done.set()


def report_outcomes(runner: SinkRunner, outcomes: collections.deque[Outcome]) -> int:
    """Hand every queued outcome to ``runner`` and empty the queue; returns how many there were."""
    delivered: dict[int, tuple[Delivery, int]] = {}
    n = 0
    while outcomes:
        item, failure, etype, text = outcomes.popleft()
        n += 1
        if item.kind == "new":
            if failure is None:
                d, k = delivered.get(id(item.owner), (item.owner, 0))
                delivered[id(item.owner)] = (d, k + 1)
            else:
                runner.failed(item.owner, item.record, failure, etype, text)
        elif item.kind == "attempt":
            runner.attempt_done(item.owner, failure, etype, text)
        else:
            waiter: ReplayWaiter = item.owner
            waiter.settle(runner, item.entry_id, item.record.topic, failure, etype, text)
    for d, k in delivered.values():
        d.delivered(k)
    return n
