"""``sinks.kafka.dlq_config.enabled`` decides whether records that time out are parked: with it
off, the sink keeps re-sending them in place (it once parked them anyway)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from log_capturer.config.schema import DispatcherDLQConfig, KafkaSinkConfig
from log_capturer.devtools.kafka_local import free_port
from log_capturer.observability.metrics import Metrics
from log_capturer.processing import Analyzer
from log_capturer.record import Chunk, Origin
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.sinks.kafka.sink import KafkaSink
from tests.support import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("enabled", [True, False])
def test_only_an_enabled_sink_dlq_parks_records_that_time_out(enabled: bool, tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens: every record times out
    config = KafkaSinkConfig.model_validate(
        {
            "brokers": [nowhere],
            "timeout": "1s",
            "batch_timeout": "100ms",
            "dlq_config": {"enabled": enabled, "send_on_timeout": True},
            "circuit_breaker": {"enabled": False},
        }
    )
    metrics = Metrics()
    store = DeadLetterStore(DispatcherDLQConfig.model_validate({"directory": str(tmp_path / "dlq")}), metrics)
    sink = KafkaSink(config, metrics, store)
    sink.start()
    chunk = Chunk(Origin("file", "/var/log/app.log"), [f"INFO line {i}" for i in range(20)])
    Analyzer(None).analyze(chunk)
    chunk.expect(20, None)
    try:
        sink.send([chunk])
        if enabled:
            wait_until(lambda: sink.parked == 20, 30, "the timed-out records parked")
            assert chunk.done
            assert store.stats()["by_reason"] == {"timeout": 20}
        else:
            time.sleep(4)  # four times the timeout: still not parked, still waiting to be delivered
            assert sink.parked == 0 and store.stats()["entries"] == 0
            assert not chunk.done and sink.outstanding == 20
    finally:
        sink.stop(0.5)
