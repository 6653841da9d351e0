"""Each compression codec: the broker stores batches with it, consumers read records intact; and
`compression_level` changes how small the broker's stored batches are."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from log_capturer.devtools.kafka_local import LocalKafka
from tests.integration.sinks.kafka.util import ship_lines
from tests.support import agent_config, create_prefixed_topics, run_cli, topic_set, write_config

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


def _compressible_lines(count: int) -> list[str]:
    """INFO lines of words drawn as in a language (a few frequent, most rare: Zipf): there a high
    level, which searches longer for matches, compresses clearly better than the fastest one
    (gzip 1 -> 9 and zstd 1 -> 12: 20-30 % fewer bytes)."""
    rng = random.Random(7)
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(2000)]
    return [
        f"INFO request {i} " + " ".join(words[min(int(rng.paretovariate(1.0)), 2000) - 1] for _ in range(20))
        for i in range(count)
    ]


@pytest.mark.parametrize(("codec", "low", "high"), [("gzip", 1, 9), ("zstd", 1, 12)])
def test_a_higher_compression_level_makes_the_broker_store_fewer_bytes(
    codec: str,
    low: int,
    high: int,
    tmp_path: Path,
    kafka: LocalKafka,
    bootstrap: str,
    topic_prefix: str,
) -> None:
    """The same lines shipped twice, at the codec's lowest and highest ``compression_level``: the
    broker's log segments of the higher level are smaller. The lines share one key (the file), so
    they land on one partition in batches of ``batch_size`` (a backlog fills them)."""
    lines = _compressible_lines(6000)
    stored: dict[int, int] = {}
    for level in (low, high):
        run = tmp_path / f"level-{level:02d}"  # equal lengths: equal source ids, equal record sizes
        topics = create_prefixed_topics(bootstrap, f"{topic_prefix}-{level}")
        section = {"compression": codec, "compression_level": level, "batch_size": 500}
        records, _ = ship_lines(run, bootstrap, topics, lines, sinks={"kafka": section})
        assert sorted(r.json()["message"] for r in records) == sorted(lines)
        topic = topics["logs-normal-priority"]
        assert {b.codec for b in kafka.stored_batches(topic)} == {codec}
        stored[level] = sum(f.stat().st_size for f in kafka.segment_files(topic))
    raw = sum(len(r.value) for r in records)
    print(json.dumps({"codec": codec, "record_bytes": raw, "stored_bytes_by_level": stored}))
    assert stored[high] < 0.9 * stored[low] < raw, stored


def test_an_out_of_range_compression_level_is_refused_with_the_key_and_the_range(tmp_path: Path) -> None:
    """Refused before anything starts (no broker needed): exit code 2, the key and the range."""
    cfg = agent_config(tmp_path, "127.0.0.1:9", topic_set("t"), sinks={"kafka": {"compression_level": 13}})
    path = write_config(tmp_path / "config.yaml", cfg)
    proc = run_cli("run", "--config", str(path), "--no-status", check=False)
    assert proc.returncode == 2, proc
    named = "sinks.kafka: compression_level 13 is out of range for zstd: use 1 to 12"
    assert named in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
