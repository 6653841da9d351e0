"""What a sink provides to run the conformance suite (``test_sink_conformance.py``) against its server.

The suite checks, for every sink, what the delivery engine (:mod:`log_capturer.engine`) and the
sink's service promise together: every line acknowledged exactly once, only after it was delivered
or durably parked with its reason, and counted; backpressure that reaches the sources. It drives
the sink the way the agent does, through the real dispatcher and real checkpoints, and checks what
the *real* server received. A sink joins by adding one module here, ``harness_<name>.py``, with:

- a class implementing :class:`SinkHarness` (below), and
- ``open_harness(request: pytest.FixtureRequest, tmp: Path) -> Iterator[SinkHarness]``: a
  generator that yields a harness ready for one test (its own destination: fresh topics, a fresh
  directory) and, after the test, makes the server available again and releases what it made.
  It gets the session's fixtures through ``request.getfixturevalue`` (the Kafka harness uses
  ``kafka``, the real broker of ``tests/conftest.py``).

``conftest.py`` finds every ``harness_*.py`` and runs each scenario once per harness, with the
test id ``[<name>]``; nothing else is edited. The sink is built from its config section through the
registry (:func:`log_capturer.registry.sink_components`, its ``SinkComponent.build``), exactly as
the agent builds it, so the section must be a valid ``sinks.<section>`` mapping.

Fault injection must use real means, never a mock or a fake server: stop the server and start it
again, make it refuse a record for that record's own sake, pause it. Each method says what the
scenarios expect of it. Every method returns within bounded time; everything listens on 127.0.0.1.

The delivery settings are the same keys for every sink (:class:`~log_capturer.engine.runner.DeliveryPolicy`:
``timeout``, ``queue_size``, ``queue_max_bytes``, ``backpressure_config``, ``circuit_breaker``, and
the sink's ``dlq_config.send_on_timeout`` if it has one); the scenarios pass them to
:meth:`SinkHarness.config` as ``delivery``, and the harness merges them into its section.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

#: What a sink promises about order: ``per_origin``: the lines of one origin (one file) arrive in
#: the order they were read, in one stream; ``none``: no promise (only exactly-once is checked).
Order = Literal["per_origin", "none"]


@dataclass(frozen=True)
class Received:
    """One record as the server holds it."""

    #: The line, as the record's ``message``.
    message: str
    #: The record's ``source_id`` (the origin the line was read from).
    origin: str
    #: Where the server keeps it in order: a topic's partition, a file.
    stream: str
    #: Its place in ``stream`` (an offset, a line number): larger is later.
    position: int


@dataclass(frozen=True)
class DeadLetter:
    """A record in a sink's own dead-letter output (Kafka's DLQ topic), as the suite compares it
    with the local store's entries."""

    #: The line, as the record's ``message``.
    message: str
    #: Why (the local store's ``error_type``: ``send_error``, ``timeout``...).
    reason: str
    #: The error's text.
    text: str


class SinkHarness(Protocol):
    """One sink under test and its real server (see the module's docstring)."""

    #: The test id (``[kafka]``).
    name: str
    #: The key of its section under ``sinks`` in config.yaml (``kafka``).
    section: str
    #: The order it promises (:data:`Order`).
    order: Order
    #: The reason (``error_type``) a record the server refused for its own sake is parked or
    #: dead-lettered with, and a fragment of the error text that must be in the entry (the
    #: server's own words, e.g. Kafka's ``MSG_SIZE_TOO_LARGE``), compared case-insensitively.
    refused_reason: str
    refused_text: str

    def config(self, delivery: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``sinks.<section>`` mapping for this test's destination, enabled, with the delivery
        settings ``delivery`` merged in (nested mappings merged key by key). Lines that batch
        should leave quickly (tens of milliseconds)."""

    def received(self, expected: int, timeout: float = 60.0) -> list[Received]:
        """Every record the server holds for this test's destination (not its dead-letter output),
        waiting up to ``timeout`` seconds for at least ``expected`` distinct lines (duplicates do
        not count: after a kill -9 they may be many while the last lines are still on the way);
        then everything there is (so duplicates show). The server must be available."""

    def dead_letters(self) -> list[DeadLetter]:
        """Every record in the sink's own dead-letter output ([] when it has none: then refused
        records are parked in the local store, which the suite reads itself)."""

    def refuse(self) -> None:
        """Make the server refuse the records of :meth:`refused_line` for their own sake (not for
        their batch's), from now on; other records are still taken. E.g. Kafka: a topic's
        ``max.message.bytes`` smaller than those records."""

    def refused_line(self, i: int) -> str:
        """A distinct line (``i`` makes it distinct) that the server refuses once :meth:`refuse` was
        called; a line no part of the agent refuses before the server (analysis, the sink's own
        limits)."""

    def make_unavailable(self) -> None:
        """Take the server away (stop it: connections refused) and return once it is gone; what it
        had written stays (it comes back with it)."""

    def make_available(self) -> None:
        """Bring the server back after :meth:`make_unavailable` or :meth:`release`; return once it
        takes records again."""

    def saturate(self) -> None:
        """Make the server stop taking records while staying there (pause it: connections stay
        open, nothing is answered), so records pile up unacknowledged in the sink. Undone by
        :meth:`release`."""

    def release(self) -> None:
        """Undo :meth:`saturate`: the server answers again and takes what waited."""


def poll_received(
    read: Callable[[], list[Received]], expected: int, timeout: float, interval: float = 0.2
) -> list[Received]:
    """``read()`` again until it holds ``expected`` distinct lines or ``timeout`` passes (the
    :meth:`SinkHarness.received` contract), then what it holds."""
    deadline = time.monotonic() + timeout
    got = read()
    while len({r.message for r in got}) < expected and time.monotonic() < deadline:
        time.sleep(interval)
        got = read()
    return got
