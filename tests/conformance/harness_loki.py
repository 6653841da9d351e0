"""The Loki sink's harness: a real VictoriaLogs (its Loki push API) of the test's own.

Each test starts VictoriaLogs in its temp directory on a free port
(:class:`~log_capturer.devtools.victorialogs_local.LocalVictoriaLogs`, started by the project's own
files) and reads back with LogsQL. Faults are the server's own: it is stopped (SIGTERM) and started
again on the same data, paused (SIGSTOP, then SIGCONT), and it runs with
``-loki.maxRequestSize`` smaller than :meth:`LokiHarness.refused_line`, so it refuses a push holding
such a line with 400 ("too big"), for that line's sake: the sink splits the push, delivers the
other entries and parks the big one with VictoriaLogs' message. The sink's own
``max_request_size`` is larger than the line (the agent does not refuse it before the server),
and ``batch_size`` keeps pushes of ordinary lines far below the server's limit.

Order: the sink sends a stream's entries in timestamp order, and the lines of one chunk share
their read time; the server keeps entries of equal timestamps in no set order, and lines sent
again after a failure carry their first timestamp. So the order of an origin's lines is not
promised (``none``); every line's presence exactly once is.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.victorialogs_local import LOKI_PUSH_PATH, LocalVictoriaLogs, VictoriaLogsError
from tests.conformance.harness import DeadLetter, Order, Received, poll_received
from tests.support import _merge, started

#: The server refuses pushes larger than this (bytes, uncompressed)...
SERVER_LIMIT = 64 * 1024
#: ...and refused_line() is larger (random letters: no smaller once compressed).
REFUSED_SIZE = 100 * 1024


class LokiHarness:
    name = "loki"
    section = "loki"
    order: Order = "none"
    refused_reason = "send_error"
    refused_text = "too big"

    def __init__(self, server: LocalVictoriaLogs) -> None:
        self.server = server
        self.run = uuid.uuid4().hex[:12]
        self._paused = False

    def config(self, delivery: Mapping[str, Any] | None = None) -> dict[str, Any]:
        section: dict[str, Any] = {
            "enabled": True,
            "url": self.server.url,
            "push_endpoint": LOKI_PUSH_PATH,
            "default_labels": {"job": "conformance", "run": self.run},
            "batch_size": 200,
            "batch_timeout": "20ms",
            "max_request_size": 1 << 20,
            # Longer than any pause of the server in the scenarios: a push in flight while the
            # server is paused is answered once it resumes, rather than sent a second time (a
            # timed-out push the server took anyway would show as a duplicate: VictoriaLogs does
            # not deduplicate entries as Loki does).
            "request_timeout": "30s",
        }
        _merge(section, dict(delivery or {}))
        return section

    def _read(self) -> list[Received]:
        out = []
        for n, row in enumerate(self.server.query(f'{{run="{self.run}"}} | sort by (_time)')):
            out.append(Received(_message(row), str(row.get("source_id", "")), str(row.get("_stream")), n))
        return out

    def received(self, expected: int, timeout: float = 60.0) -> list[Received]:
        return poll_received(self._read, expected, timeout)

    def dead_letters(self) -> list[DeadLetter]:
        return []  # Loki has no dead-letter output: refused records are in the local store

    def refuse(self) -> None:
        """Nothing to change: the server refuses pushes over SERVER_LIMIT from its start."""

    def refused_line(self, i: int) -> str:
        rnd = random.Random(i)
        return f"refused {i} " + "".join(rnd.choices(string.ascii_letters, k=REFUSED_SIZE))

    def make_unavailable(self) -> None:
        self._paused = False
        self.server.stop()

    def make_available(self) -> None:
        if self._paused:
            self.release()
        if self.server.pid() is None:
            self.server.up(timeout=60)

    def saturate(self) -> None:
        self.server.pause()
        self._paused = True

    def release(self) -> None:
        self.server.resume()
        self._paused = False


def _message(row: dict[str, Any]) -> str:
    """The record's message: VictoriaLogs parses the JSON line into fields (``message``), or keeps
    the line as ``_msg``."""
    if "message" in row:
        return str(row["message"])
    msg = str(row.get("_msg", ""))
    if msg.startswith("{"):
        return str(orjson.loads(msg).get("message", msg))
    return msg


def open_harness(request: pytest.FixtureRequest, tmp: Path) -> Iterator[LokiHarness]:
    server = LocalVictoriaLogs(
        tmp / "victorialogs", port=free_port(), extra_args=(f"-loki.maxRequestSize={SERVER_LIMIT}",)
    )
    started(server, "VictoriaLogs", VictoriaLogsError, timeout=60)
    harness = LokiHarness(server)
    try:
        yield harness
    finally:
        harness.make_available()
        server.down()
