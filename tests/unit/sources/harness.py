"""Drive a source synchronously against the real dispatcher and an in-memory sink.

The sink is a stand-in for our own ``Sink`` interface (it acknowledges what it
receives, or holds the acknowledgements), so source logic can be tested
without a network. Everything that ships to Kafka is tested in
``tests/integration`` against a real broker.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from log_capturer.config.schema import DispatcherConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.processing import Analyzer
from log_capturer.record import Chunk
from log_capturer.sinks.base import SinkHealth
from log_capturer.sources.file.tailer import Tailer


class MemorySink:
    name = "memory"
    sink_type = "memory"

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any] | None]] = []
        self.hold = False
        self.held: list[Chunk] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        pass

    def send(self, chunks: list[Chunk]) -> None:
        with self._lock:
            for c in chunks:
                meta = c.meta
                for i, line in enumerate(c.lines):
                    self.records.append((c.origin.source_id, line, meta[i] if meta else None))
                if self.hold:
                    self.held.append(c)
                else:
                    c.ack(len(c.lines))

    def release(self) -> None:
        with self._lock:
            held, self.held = self.held, []
        for c in held:
            c.ack(len(c.lines))

    def idle(self) -> None:
        pass

    def accepting(self) -> bool:
        return True

    def dead_letter(self, chunks: list[Chunk], reason: str, text: str) -> bool:
        return False

    def flush(self, timeout: float) -> int:
        return 0

    def stop(self, timeout: float) -> None:
        pass

    def health(self) -> SinkHealth:
        return SinkHealth(self.name, "healthy", "")

    def stats(self) -> dict[str, object]:
        return {}

    def lines(self) -> list[str]:
        with self._lock:
            return [line for _, line, _ in self.records]

    def duplicates(self) -> dict[str, int]:
        return {k: n for k, n in Counter(self.lines()).items() if n > 1}


def make_dispatcher(sink: MemorySink, metrics: Metrics | None = None) -> Dispatcher:
    d = Dispatcher(DispatcherConfig(worker_count=1), [sink], Analyzer(None), metrics or Metrics())
    d.start()
    return d


def settle(tailer: Tailer, dispatcher: Dispatcher, rounds: int = 2000) -> None:
    """Pump until nothing is left to read, queue or acknowledge (bounded)."""
    for _ in range(rounds):
        busy = tailer.pump_all(time.monotonic())
        idle = all(tf.checkpoint.idle for tf in list(tailer.followed.tracked.values()))
        if not busy and dispatcher.queue.size == 0 and idle:
            return
        time.sleep(0.002)
    raise AssertionError("the source did not settle")
