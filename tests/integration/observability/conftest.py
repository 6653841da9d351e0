"""Fixtures of the observability tests: a paced writer, Prometheus, and the SASL/TLS broker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.integration.sinks.kafka.conftest import secure_cluster, secure_kafka

__all__ = ["LineWriter", "secure_cluster", "secure_kafka"]


class LineWriter:
    """Appends lines to a file in a background thread until stopped (at most ``limit`` seconds)."""

    def __init__(self, path: Path, per_tick: int = 50, tick: float = 0.05, limit: float = 120) -> None:
        self.path = path
        self.per_tick = per_tick
        self.tick = tick
        self.limit = limit
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="line-writer", daemon=True)

    def _run(self) -> None:
        levels = ("ERROR", "WARN", "INFO", "DEBUG", "")
        deadline = time.monotonic() + self.limit
        with self.path.open("a") as f:
            while not self._stop.is_set() and time.monotonic() < deadline:
                chunk = "".join(
                    f"{levels[(self.written + i) % 5]} flowing line {self.written + i} tenant_id=t{i % 4}\n"
                    for i in range(self.per_tick)
                )
                f.write(chunk)
                f.flush()
                self.written += self.per_tick
                self._stop.wait(self.tick)

    def __enter__(self) -> LineWriter:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
