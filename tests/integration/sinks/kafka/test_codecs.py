"""Each compression codec: the broker stores batches with it, consumers read records intact."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from log_capturer.devtools.kafka_local import LocalKafka
from tests.integration.sinks.kafka.util import ship_lines
from tests.support import create_prefixed_topics

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_codec_is_stored_by_the_broker_and_records_read_back_intact(
    codec: str, tmp_path: Path, kafka: LocalKafka, bootstrap: str, topic_prefix: str
) -> None:
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines = [f"INFO request {i} handled " + "payload " * (i % 7) for i in range(3000)]
    records, _ = ship_lines(
        tmp_path, bootstrap, topics, lines, sinks={"kafka": {"compression": codec, "required_acks": 1}}
    )
    assert sorted(r.json()["message"] for r in records) == sorted(lines)
    dump = kafka.dump_batches(topics["logs-normal-priority"])
    codecs = set(re.findall(r"compresscodec: (\w+)", dump))
    assert codecs == {codec}, f"broker stored batches with {codecs}, expected {codec}:\n{dump[:2000]}"
