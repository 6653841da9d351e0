from __future__ import annotations

import threading
import time

import pytest

from log_capturer.sinks.kafka import partitioning
from log_capturer.sinks.kafka.partitioning import (
    InvalidPartition,
    PartitionChooser,
    PartitionCounts,
    java_partition,
    murmur2,
)
from tests.support import wait_until

# org.apache.kafka.common.utils.UtilsTest#testMurmur2
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), JAVA_VECTORS.items())
def test_murmur2_matches_the_java_reference(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_java_partition_is_positive_modulo() -> None:
    assert java_partition(b"21", 6) == (-973932308 & 0x7FFFFFFF) % 6


def test_round_robin_continues_across_calls() -> None:
    chooser = PartitionChooser("round-robin", lambda _t: 3)
    assert chooser.round_robin("t", 4) == [0, 1, 2, 0]
    assert chooser.round_robin("t", 2) == [1, 2]
    assert PartitionChooser("round-robin", lambda _t: None).round_robin("t", 2) is None


def test_manual_values() -> None:
    chooser = PartitionChooser("manual", lambda _t: 4)
    assert chooser.manual("t", "3") == 3
    for bad, msg in (
        (None, "no key_field"),
        ("x", "not a partition number"),
        ("4", "0-3"),
        ("-1", "does not"),
    ):
        with pytest.raises(InvalidPartition, match=msg):
            chooser.manual("t", bad)


def test_partition_counts_answer_at_once_and_are_looked_up_by_their_own_thread() -> None:
    """A lookup that waits (no broker answers) never holds up get(); a failed one counts as
    unknown until the next try, one METADATA_TTL later."""
    answers: dict[str, int | None] = {"a": None, "b": 6}
    asked: list[str] = []
    release = threading.Event()

    def lookup(topic: str) -> int | None:
        release.wait(10)
        asked.append(topic)
        if topic == "c":
            raise RuntimeError("no producer")
        return answers[topic]

    counts = PartitionCounts(lookup)
    try:
        t0 = time.monotonic()
        assert [counts.get("a"), counts.get("b"), counts.get("c")] == [None, None, None]
        assert time.monotonic() - t0 < 1, "get() does not wait for the lookup"
        release.set()
        wait_until(lambda: counts.get("b") == 6 and len(asked) == 3, 10, "the lookups")
        assert counts.get("a") is None and counts.get("c") is None
        assert sorted(asked) == ["a", "b", "c"]  # a failed lookup is not repeated on every chunk
        answers["a"] = 4
        # One METADATA_TTL later: the old answer while it is looked up again.
        counts._known["a"] = (None, time.monotonic() - partitioning.METADATA_TTL - 1)
        assert counts.get("a") is None
        wait_until(lambda: counts.get("a") == 4, 10, "the second lookup")
    finally:
        counts.stop()
