"""Each backpressure level of the Kafka sink's queue has its own effect (a stalled sink: nothing
listens where its broker should be, so nothing is ever acknowledged):

- warning (0.75): logged and counted;
- critical (0.90): the sink stops accepting lines, so the dispatcher holds the sources;
- emergency (0.95): a chunk that would take the queue past it waits, and once nothing was
  acknowledged for ``timeout`` it overflows to the local DLQ with the reason ``backpressure``.
"""

from __future__ import annotations

import logging
import time
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
        assert sink.health().status == "degraded"

        late = chunk(5, "d")  # 92 + 5 > 95: it waits, then overflows once the sink is stalled
        started = time.monotonic()
        sink.send([late])
        assert time.monotonic() - started >= 0.5, "it waited before it overflowed"
        assert late.done and sink.overflowed == 5 == sink.parked
        assert events(metrics, "emergency") == 1
        assert store.stats()["by_reason"] == {"backpressure": 5}
        assert sink.outstanding == 92, "what was admitted stays in the producer"
    finally:
        sink.stop(0.5)
