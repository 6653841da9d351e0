"""A chunk the Kafka sink cannot encode (a line with a lone surrogate, which no JSON encoder
takes) is parked alone: its batch-mates reach Kafka once, the sink's count of what it holds stays
exact, and a stop does not wait for lines it never had."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Chunk, Origin
from tests.integration.sinks.kafka.util import dlq_entries, sink_and_dispatcher
from tests.support import consume_all, create_prefixed_topics, wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("native", [True, False])
def test_a_chunk_that_cannot_be_encoded_is_parked_alone(
    native: bool, tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    # One batch of the three chunks.
    batch = {"flush_on_idle": False, "batch_timeout": "1s", "retry_base_delay": "10ms"}
    sink, dispatcher = sink_and_dispatcher(bootstrap, topics["logs"], tmp_path / "dlq", native, batch)
    origin = Origin("file", "/var/log/app.log")
    checkpoint = Checkpoint()
    bad = "INFO a lone surrogate \ud800 here"
    try:
        for i, lines in enumerate([["INFO first 1", "INFO first 2"], [bad], ["INFO third"]]):
            dispatcher.submit(Chunk(origin, lines, start=i * 100, end=i * 100 + 100), checkpoint)
        wait_until(lambda: checkpoint.committed == 300, 60, "every chunk delivered or parked")
        wait_until(lambda: sink.outstanding == 0, 30, "the sink to hold nothing")
        assert sink.produced == sink.finished == 3
        check = dispatcher.check()
        assert check["status"] == "degraded" and "surrogates not allowed" in str(check["message"])
        stopping = time.monotonic()
        assert dispatcher.close(5)
        sink.stop(10)
        assert time.monotonic() - stopping < 5, "nothing left to wait for"
    finally:
        dispatcher.close(1)
        sink.stop(1)
    got = consume_all(bootstrap, [topics["logs"]], expected=3)
    assert sorted(orjson.loads(r.value)["message"] for r in got) == [
        "INFO first 1",
        "INFO first 2",
        "INFO third",
    ]
    [entry] = dlq_entries(tmp_path / "dlq")
    assert entry["error_type"] == "all_sinks_failed"
    assert entry["original_entry"]["message"] == "INFO a lone surrogate \\ud800 here"
