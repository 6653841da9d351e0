from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from log_capturer.config.schema import DispatcherDLQConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.reliability.dlq import DeadLetterStore, DLQEntry, DLQFullError, DLQWriteError

FIELDS = {
    "entry_id",
    "timestamp",
    "original_entry",
    "error_message",
    "error_type",
    "failed_sink",
    "retry_count",
    "reprocess_attempts",
    "next_reprocess_time",
}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def entry(i: int, reason: str = "message_too_large", size: int = 10) -> DLQEntry:
    record = {"message": f"line {i} " + "x" * size, "level": "error", "source_id": "/a.log"}
    return DLQEntry(record, f"problem {i}", reason, "kafka_sink", topic="logs-high-priority", key="acme")


def store(
    tmp_path: Path, clock: Clock | None = None, metrics: Metrics | None = None, **cfg: object
) -> DeadLetterStore:
    config = DispatcherDLQConfig.model_validate({"directory": str(tmp_path / "dlq"), **cfg})
    return DeadLetterStore(config, metrics, clock or Clock())


def test_entries_are_json_lines_with_the_contract_fields(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.park([entry(1), entry(2)])
    [seg] = list((tmp_path / "dlq").glob("dlq_entry_*.json"))
    docs = [orjson.loads(line) for line in seg.read_bytes().splitlines()]
    assert [d["original_entry"]["message"].split()[1] for d in docs] == ["1", "2"]
    for d in docs:
        assert set(d) >= FIELDS
        assert d["topic"] == "logs-high-priority" and d["key"] == "acme"
        assert d["reprocess_attempts"] == 0
    # next_reprocess_time = parked + initial_delay (2 minutes by default)
    assert docs[0]["timestamp"].startswith("2027-01-15T08:00:00")
    assert docs[0]["next_reprocess_time"].startswith("2027-01-15T08:02:00")
    assert s.stats()["entries"] == 2


def test_segments_roll_and_a_full_store_refuses_entries(tmp_path: Path) -> None:
    metrics = Metrics()
    s = store(tmp_path, metrics=metrics, max_size_mb=1, max_files=4)
    big = [entry(i, size=200_000) for i in range(4)]  # ~200 KB per call: one segment each
    for e in big:
        s.park([e])
    assert len(s.segments()) == 4
    with pytest.raises(DLQFullError, match=r"max_size_mb=1, max_files=4"):
        s.park([entry(9, size=200_000)])
    assert s.full and "is full" in s.last_error
    assert metrics.registry.get_sample_value("errors_total", {"component": "dlq", "error_type": "full"}) == 1
    assert s.stats()["entries"] == 4  # nothing was dropped


def test_drop_oldest_makes_room_and_counts_what_it_dropped(tmp_path: Path) -> None:
    metrics = Metrics()
    s = store(tmp_path, metrics=metrics, max_size_mb=1, max_files=4, when_full="drop_oldest")
    for i in range(5):
        s.park([entry(i, size=200_000)])
    messages = [d["original_entry"]["message"].split()[1] for _, d in s.read()]
    assert messages == ["1", "2", "3", "4"]
    dropped = metrics.registry.get_sample_value("dlq_entries_removed_total", {"reason": "dropped_full"})
    assert dropped == 1


def test_an_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    config = DispatcherDLQConfig(directory=str(blocker / "dlq"))
    s = DeadLetterStore(config)
    with pytest.raises(DLQWriteError, match=r"dispatcher\.dlq_config\.directory"):
        s.park([entry(1)])
    assert s.last_error and not s.full
    blocker.unlink()
    s.park([entry(1)])
    assert s.last_error == ""


def test_settle_removes_delivered_and_backs_off_failed_entries(tmp_path: Path) -> None:
    clock = Clock()
    s = store(
        tmp_path,
        clock,
        reprocessing_config={"initial_delay": "10s", "delay_multiplier": 3, "max_delay": "60s"},
    )
    s.park([entry(i) for i in range(3)])
    ids = [d["entry_id"] for _, d in s.read()]
    clock.now += 100
    s.settle({ids[0]}, {ids[1]: "broker down"})
    docs = {d["entry_id"]: d for _, d in s.read()}
    assert set(docs) == {ids[1], ids[2]}
    failed = docs[ids[1]]
    assert failed["reprocess_attempts"] == 1 and failed["last_reprocess_error"] == "broker down"
    assert failed["next_reprocess_time"].startswith("2027-01-15T08:02:10")  # +100 s, then 10 s x 3
    s.settle(set(), {ids[1]: "again"})
    s.settle(set(), {ids[1]: "again"})
    docs = {d["entry_id"]: d for _, d in s.read()}
    assert docs[ids[1]]["reprocess_attempts"] == 3
    assert docs[ids[1]]["next_reprocess_time"].startswith("2027-01-15T08:02:40")  # capped at 60 s


def test_select_due_respects_schedule_age_and_retries(tmp_path: Path) -> None:
    clock = Clock()
    s = store(
        tmp_path,
        clock,
        reprocessing_config={"initial_delay": "10s", "min_entry_age": "30s", "max_retries": 1},
    )
    s.park([entry(1)])
    assert s.select() == []
    clock.now += 15  # past next_reprocess_time, not old enough
    assert s.select() == []
    clock.now += 20
    [due] = s.select()
    s.settle(set(), {due["entry_id"]: "down"})
    clock.now += 3600
    assert s.select() == []  # out of automatic retries
    assert len(s.select(due_only=False)) == 1
    stats = s.stats()
    assert stats["exhausted"] == 1 and stats["due_for_reprocessing"] == 0


def test_entries_without_a_topic_are_kept_but_never_due(tmp_path: Path) -> None:
    """What a source rejected (HTTP ingest's invalid records) was never routed: people read it,
    reprocessing never replays it."""
    clock = Clock()
    s = store(tmp_path, clock, reprocessing_config={"initial_delay": "10s", "min_entry_age": "30s"})
    s.park([DLQEntry({"log": ""}, "record 1: 'log' is empty", "invalid_record", "http_ingest"), entry(1)])
    clock.now += 3600
    [due] = s.select()
    assert due["topic"] == "logs-high-priority"
    assert len(s.select(due_only=False)) == 2  # `dlq list` shows both
    assert [d["topic"] for d in s.select(due_only=False, replayable=True)] == ["logs-high-priority"]
    stats = s.stats()
    assert stats["entries"] == 2 and stats["by_reason"]["invalid_record"] == 1
    assert stats["due_for_reprocessing"] == 1 and stats["exhausted"] == 0


def test_expire_removes_entries_older_than_retention(tmp_path: Path) -> None:
    clock = Clock()
    metrics = Metrics()
    s = store(tmp_path, clock, metrics, retention_days=2)
    s.park([entry(1)])
    clock.now += 86400
    s.park([entry(2)])
    clock.now += 86400 + 1
    assert s.expire() == 1
    assert [d["original_entry"]["message"].split()[1] for _, d in s.read()] == ["2"]
    assert metrics.registry.get_sample_value("dlq_entries_removed_total", {"reason": "expired"}) == 1


def test_an_entry_cut_by_a_crash_is_kept_and_does_not_swallow_the_next(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.park([entry(1)])
    [seg] = s.segments()
    with open(seg, "ab") as f:
        f.write(b'{"entry_id": "half-writ')  # a crash in the middle of a write
    s.park([entry(2)])
    assert [d["original_entry"]["message"].split()[1] for _, d in s.read()] == ["1", "2"]
    assert s.stats()["corrupt_lines"] == 1
    s.remove(lambda d: False, "purged")
    assert seg.read_bytes() == b'{"entry_id": "half-writ\n'  # never deleted what cannot be read


def test_two_stores_on_one_directory_do_not_lose_entries(tmp_path: Path) -> None:
    a, b = store(tmp_path), store(tmp_path)
    for i in range(50):
        (a if i % 2 else b).park([entry(i)])
    ids = {d["entry_id"] for _, d in a.read()}
    b.settle(set(list(ids)[:10]), {})
    a.park([entry(99)])
    assert len(b.read()) == 41
    assert os.path.exists(tmp_path / "dlq" / ".lock")
