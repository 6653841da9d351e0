from __future__ import annotations

import pytest

from log_capturer.sinks.kafka.partitioning import InvalidPartition, PartitionChooser, java_partition, murmur2

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


def test_known_counts_are_looked_up_once_per_ttl_even_when_the_lookup_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import log_capturer.sinks.kafka.partitioning as mod

    answers: dict[str, int | None] = {"a": None, "b": 6}
    asked: list[str] = []

    def lookup(topic: str) -> int | None:
        asked.append(topic)
        return answers[topic]

    now = [100.0]
    monkeypatch.setattr(mod.time, "monotonic", lambda: now[0])
    chooser = PartitionChooser("hash", lookup)
    assert [chooser.known("a"), chooser.known("a"), chooser.known("b"), chooser.known("b")] == [
        None,
        None,
        6,
        6,
    ]
    assert asked == ["a", "b"]  # a failed lookup is not repeated on every chunk
    answers["a"], answers["b"] = 4, 8
    now[0] += mod.METADATA_TTL + 1
    assert [chooser.known("a"), chooser.known("b")] == [4, 8]
    assert asked == ["a", "b", "a", "b"]
