"""Each backpressure level of the Kafka sink's queue has its own effect (a stalled sink: nothing
listens where its broker should be, so nothing is ever acknowledged):

- warning (0.75): logged and counted;
- critical (0.90): the sink stops accepting lines, so the dispatcher holds the sources;
- emergency (0.95): a chunk that would take the queue past it waits, and once nothing was
  acknowledged for ``timeout`` it overflows to the local DLQ with the reason ``backpressure``.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import pytest

from log_capturer.config.schema import DispatcherConfig, DispatcherDLQConfig, KafkaSinkConfig
from log_capturer.devtools.kafka_local import free_port
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.processing import Analyzer
from log_capturer.record import Chunk, Origin
from log_capturer.reliability.backpressure import Level
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.sinks.kafka.sink import KafkaSink
from tests.support import wait_until

pytestmark = pytest.mark.integration


def chunk(n: int, tag: str) -> Chunk:
    c = Chunk(Origin("file", f"/var/log/{tag}.log"), [f"WARN {tag} line {i}" for i in range(n)])
    Analyzer(None).analyze(c)
    c.expect(n, None)
    return c


def events(metrics: Metrics, level: str) -> float:
    return metrics.kafka_backpressure_events.labels("kafka", level)._value.get()  # type: ignore[no-any-return]


def test_each_level_of_the_sink_queue_acts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    config = KafkaSinkConfig.model_validate(
        {
            "brokers": [f"127.0.0.1:{free_port()}"],
            "queue_size": 100,
            "timeout": "1s",
            "batch_timeout": "100ms",
            # Records wait in the producer (no time limit), the breaker stays out of the way.
            "dlq_config": {"send_on_timeout": False},
            "circuit_breaker": {"enabled": False},
            "backpressure_config": {"timeout_escalation": False},
        }
    )
    metrics = Metrics()
    store = DeadLetterStore(DispatcherDLQConfig.model_validate({"directory": str(tmp_path / "dlq")}), metrics)
    sink = KafkaSink(config, metrics, store)
    sink.start()
    try:
        sink.send([chunk(80, "a")])
        # Seen at the latest by the poll thread's gauges, once a second.
        wait_until(lambda: sink.pressure.level is Level.WARNING, 5, "the warning level")
        assert events(metrics, "warning") == 1
        assert "sink queue at warning level" in caplog.text
        assert sink.accepting()

        sink.send([chunk(12, "b")])
        wait_until(lambda: sink.pressure.level is Level.CRITICAL, 5, "the critical level")
        assert events(metrics, "critical") == 1
        assert not sink.accepting()
        dispatcher = Dispatcher(DispatcherConfig(), [sink], Analyzer(None), metrics)
        held = Chunk(Origin("file", "/var/log/c.log"), ["WARN c"])
        assert dispatcher.submit(held, None, timeout=0.3) is False, "the source is held, not queued"
        assert dispatcher.queue.size == 0

        late = chunk(5, "d")  # 92 + 5 > 95: it waits, then overflows once the sink is stalled
        sink.send([late])
        assert late.done and sink.overflowed == 5 == sink.parked
        assert events(metrics, "emergency") == 1
        assert store.stats()["by_reason"] == {"backpressure": 5}
        # Only once Kafka had acknowledged nothing for the timeout (1 s).
        [why] = {e["error_message"] for e in store.select(due_only=False)}
        stalled = float(re.search(r"acknowledged nothing for ([0-9.]+)s", why).group(1))  # type: ignore[union-attr]
        assert stalled >= 1.0, why
        assert sink.outstanding == 92, "what was admitted stays in the producer"
    finally:
        sink.stop(0.5)


def test_the_sink_queue_counts_the_bytes_of_encoded_records(tmp_path: Path) -> None:
    """Control characters are escaped in the records (\\u0001: 6 bytes for 1 character), so 100
    lines of 1,000 of them are 100,000 characters but over 600,000 bytes in the producer. Two such
    chunks do not fit in 1 MiB: the second waits (it was admitted when characters were counted)."""
    config = KafkaSinkConfig.model_validate(
        {
            "brokers": [f"127.0.0.1:{free_port()}"],
            "queue_size": 100_000,
            "queue_max_bytes": 1 << 20,
            "timeout": "1s",
            "batch_timeout": "100ms",
            "dlq_config": {"send_on_timeout": False},
            "circuit_breaker": {"enabled": False},
            "backpressure_config": {"timeout_escalation": False, "queue_emergency_threshold": 1.0},
        }
    )
    sink = KafkaSink(config, Metrics(), None)
    sink.start()

    def wide(tag: str) -> Chunk:
        c = Chunk(Origin("file", f"/var/log/{tag}.log"), ["\x01" * 1000 for _ in range(100)])
        Analyzer(None).analyze(c)
        c.expect(100, None)
        return c

    second = threading.Thread(target=lambda: sink.send([wide("b")]), daemon=True)
    try:
        sink.send([wide("a")])
        assert 0.55 < sink.utilization < 0.7, sink.utilization  # bytes of records, not characters
        second.start()
        second.join(1.5)
        assert second.is_alive(), "the second chunk must wait: with it the producer would hold 1.2 MB"
        assert sink.outstanding == 100
    finally:
        sink.stop(0.5)
        second.join(5)
