"""Once the Kafka sink holds a chunk's records encoded, the chunk's line text is dropped (held
once, in the records in flight): every line still reaches Kafka exactly, and a record refused
for its size is parked from its encoded value, with its line."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Chunk, Origin, ReleasedLines
from tests.integration.sinks.kafka.util import dlq_entries, sink_and_dispatcher
from tests.support import consume_all, create_prefixed_topics, wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("native", [True, False])
def test_released_chunks_deliver_every_line_and_park_an_oversize_one_with_its_text(
    native: bool, tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    batch = {"batch_size": 10000, "batch_timeout": "200ms"}
    sink, dispatcher = sink_and_dispatcher(
        bootstrap, topics["logs"], tmp_path / "dlq", native, batch, max_message_bytes=16384
    )
    checkpoint = Checkpoint()
    # Small chunks (handed over as one group), then 8 KiB lines with one too large for Kafka.
    small = [[f"INFO small {i}.{j}" for j in range(3)] for i in range(20)]
    oversize = "ERROR " + "\u00e9" * 10000
    long = [f"INFO long {i} " + "x" * 8192 for i in range(50)] + [oversize]
    chunks = [Chunk(Origin("file", f"/var/log/s{i}.log"), lines) for i, lines in enumerate(small)]
    chunks.append(Chunk(Origin("file", "/var/log/long.log"), long))
    end = 0
    for c in chunks:
        c.start, c.end = end, end + 1
        end += 1
    try:
        assert sink.releases_text
        for c in chunks:
            dispatcher.submit(c, checkpoint)
        wait_until(lambda: checkpoint.committed == end, 60, "every chunk delivered or parked")
        assert all(isinstance(c.lines, ReleasedLines) for c in chunks)
        assert sum(len(c.lines) for c in chunks) == 60 + 51 == checkpoint.acked_lines
        assert dispatcher.close(5)
    finally:
        dispatcher.close(1)
        sink.stop(10)
    sent = [line for lines in small for line in lines] + long[:-1]
    got = consume_all(bootstrap, [topics["logs"]], expected=len(sent))
    assert sorted(orjson.loads(r.value)["message"] for r in got) == sorted(sent)
    [entry] = dlq_entries(tmp_path / "dlq")
    assert entry["original_entry"]["message"] == oversize
    assert entry["error_type"] == "message_too_large"
