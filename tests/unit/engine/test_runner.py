"""The engine around a sink, with a service of the tests' own that scripts each record's outcome:
what every sink gets without writing it (retries, dead letters, parking, acknowledgements)."""

from __future__ import annotations

import collections
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from log_capturer.engine.contract import Failure, Record, Refused, ServiceState
from log_capturer.engine.runner import (
    RETRY_MAX_DELAY,
    SMALL_CHUNK,
    Attempt,
    Delivery,
    DeliveryPolicy,
    SinkRunner,
    backoff,
)
from log_capturer.observability.metrics import Metrics
from log_capturer.processing import Analyzer
from log_capturer.record import Chunk, ChunkGroup, Origin
from log_capturer.reliability.config import BackpressureConfig, CircuitBreakerConfig, DispatcherDLQConfig
from log_capturer.reliability.dlq import DeadLetterStore
from tests.support import wait_until

#: What happens to a record on each of its attempts: None delivered, or a failure.
Script = Callable[[bytes, int], Failure | None]


class Prepared:
    def __init__(self, chunk: Chunk) -> None:
        self.chunk = chunk
        self.records = [Record("t", line.encode(), None) for line in chunk.lines]
        self.nbytes = sum(len(r.value) for r in self.records)
        self.counts = {"t": len(self.records)}


class ScriptedService:
    """Sends nothing anywhere: its thread decides each record's outcome by ``script`` and reports
    it to the runner, as a client's delivery reports would come."""

    default_destination = "t"

    def __init__(self, script: Script, dead_letter: bool | None = None, refuse: str = "") -> None:
        self.script = script
        self.dead_letter_output = dead_letter  # None: no output; False: it fails
        self.refuse = refuse
        self.runner: SinkRunner | None = None
        self.pending: deque[tuple[Record, Callable[[Failure | None], None], int]] = deque()
        self.attempts: dict[bytes, int] = {}
        self.sent_alone: list[bytes] = []
        self.dead_letters: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, runner: SinkRunner) -> None:
        self.runner = runner
        self._thread.start()

    def _run(self) -> None:
        assert self.runner is not None
        while not self._stop.is_set():
            while self.pending:
                record, report, attempt = self.pending.popleft()
                report(self.script(record.value, attempt))
            self.runner.tick(time.monotonic())
            time.sleep(0.002)

    def _send(self, record: Record, report: Callable[[Failure | None], None]) -> None:
        n = self.attempts.get(record.value, 0)
        self.attempts[record.value] = n + 1
        self.pending.append((record, report, n))

    def prepare(self, chunk: Chunk) -> Prepared:
        return Prepared(chunk)

    def records_of(self, chunk: Chunk) -> list[Record]:
        return Prepared(chunk).records

    def send(self, prepared: Any, delivery: Delivery) -> list[Refused]:
        runner = self.runner
        assert runner is not None
        refused = []
        for record in prepared.records:
            if self.refuse and self.refuse in record.value.decode():
                refused.append(Refused(record, "message_too_large", "too large"))
                continue

            def report(failure: Failure | None, record: Record = record) -> None:
                if failure is None:
                    delivery.delivered(1)
                else:
                    runner.failed(delivery, record, failure, failure.value, f"scripted {failure.value}")

            self._send(record, report)
        return refused

    def resend(self, attempt: Attempt, alone: bool) -> bool:
        runner = self.runner
        assert runner is not None
        if alone:
            self.sent_alone.append(attempt.record.value)

        def report(failure: Failure | None) -> None:
            if failure is None:
                runner.attempt_done(attempt, None)
            else:
                runner.attempt_done(attempt, failure, failure.value, f"scripted {failure.value}")

        self._send(attempt.record, report)
        return True

    def dead_letter(self, attempt: Attempt) -> bool | None:
        runner = self.runner
        assert runner is not None
        if self.dead_letter_output is None:
            return None
        self.dead_letters.append(attempt.record.value)
        error = None if self.dead_letter_output else "the output refused it"
        self.pending.append(
            (attempt.record, lambda _f: runner.dead_letter_done(attempt, error, "output x"), 0)
        )
        return True

    def idle(self) -> None:
        pass

    def flush_soon(self) -> None:
        pass

    def queued(self) -> int:
        return len(self.pending)

    def state(self) -> ServiceState:
        return ServiceState()

    def probe(self) -> str:
        return ""

    def stats(self) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def replay(self, records: Any, timeout: float) -> dict[str, str | None]:
        return {}


def runner(tmp_path: Path, service: ScriptedService, **policy: Any) -> tuple[SinkRunner, DeadLetterStore]:
    metrics = Metrics()
    store = DeadLetterStore(DispatcherDLQConfig.model_validate({"directory": str(tmp_path / "dlq")}), metrics)
    settings: dict[str, Any] = {
        "queue_size": 1000,
        "queue_max_bytes": 1 << 20,
        "timeout": 30.0,
        "backpressure": BackpressureConfig(),
        "circuit_breaker": CircuitBreakerConfig(enabled=False),
        "park_on_timeout": True,
        **policy,
    }
    r = SinkRunner(service, DeliveryPolicy(**settings), metrics, store, "test_sink", "test")
    r.start()
    return r, store


def chunk(*lines: str) -> Chunk:
    c = Chunk(Origin("file", "/a.log"), list(lines))
    Analyzer(None).analyze(c)
    c.expect(len(lines), None)
    return c


def reasons(store: DeadLetterStore) -> dict[str, int]:
    return dict(store.stats()["by_reason"])


def sample(r: SinkRunner, name: str, **labels: str) -> float | None:
    return r.metrics.registry.get_sample_value(name, labels)


def test_delivered_records_acknowledge_their_chunk_once(tmp_path: Path) -> None:
    r, _ = runner(tmp_path, ScriptedService(lambda _v, _n: None))
    try:
        c = chunk("a", "b", "c")
        r.send([c])
        wait_until(lambda: c.done, 5, "the acknowledgement")
        assert (r.delivered, r.outstanding, r.parked) == (3, 0, 0)
        # A second chunk counts into the same series (their children are kept by the runner).
        c2 = chunk("d", "e")
        r.send([c2])
        wait_until(lambda: c2.done, 5, "the acknowledgement")
        assert sample(r, "kafka_messages_produced_total", topic="t", status="success") == 5
        assert sample(r, "kafka_batch_size_messages_count", topic="t") == 2
        assert sample(r, "kafka_batch_size_messages_sum", topic="t") == 5
        assert sample(r, "kafka_batch_send_duration_seconds_count", topic="t") == 2
        assert sample(r, "sink_send_duration_seconds_count", sink_type="test") == 2
        assert sample(r, "logs_sent_total", sink_type="test", status="success") == 5
        assert r.delivered_by_topic == {"t": 5}
    finally:
        r.stop(1)


def test_quiet_while_it_holds_nothing_and_has_nothing_to_retry(tmp_path: Path) -> None:
    """What lets the Kafka sink's poll thread sleep long rounds (``SinkRunner.quiet``)."""
    service = ScriptedService(lambda v, n: Failure.RETRY if v == b"b" and n < 4 else None)
    r, _ = runner(tmp_path, service)
    try:
        assert r.quiet()
        c = chunk("a", "b")
        r.send([c])
        # "b" is in flight or waits for its retries (backing off) for a while: not quiet.
        wait_until(lambda: not r.quiet(), 5, "a record held")
        wait_until(lambda: c.done, 20, "the acknowledgement")
        assert r.retried == 4 and r.quiet()
    finally:
        r.stop(1)


def test_a_retriable_failure_is_sent_again_until_delivered(tmp_path: Path) -> None:
    service = ScriptedService(lambda v, n: Failure.RETRY if v == b"b" and n < 2 else None)
    r, store = runner(tmp_path, service)
    try:
        c = chunk("a", "b")
        r.send([c])
        wait_until(lambda: c.done, 10, "the acknowledgement")
        assert service.attempts[b"b"] == 3 and r.retried == 2
        assert (r.delivered, r.parked, reasons(store)) == (2, 0, {})
    finally:
        r.stop(1)


def test_a_rejected_record_goes_to_the_dead_letter_output(tmp_path: Path) -> None:
    service = ScriptedService(lambda v, _n: Failure.REJECT if v == b"bad" else None, dead_letter=True)
    r, store = runner(tmp_path, service)
    try:
        c = chunk("ok", "bad")
        r.send([c])
        wait_until(lambda: c.done, 5, "the acknowledgement")
        assert service.dead_letters == [b"bad"]
        assert (r.delivered, r.sent_to_dead_letter, r.parked, reasons(store)) == (1, 1, 0, {})
    finally:
        r.stop(1)


def test_a_dead_letter_the_output_refuses_or_without_output_is_parked(tmp_path: Path) -> None:
    for output in (False, None):
        service = ScriptedService(lambda v, _n: Failure.REJECT if v == b"bad" else None, dead_letter=output)
        r, store = runner(tmp_path / str(output), service)
        try:
            c = chunk("ok", "bad")
            r.send([c])
            wait_until(lambda c=c: c.done, 5, "the acknowledgement")
            assert (r.delivered, r.parked, reasons(store)) == (1, 1, {"send_error": 1})
            wait_until(lambda r=r: r.delivered_by_topic == {"t": 1}, 5, "the chunk's topic counts")
            [entry] = store.select(due_only=False)
            if output is False:
                assert "the DLQ output x failed too: the output refused it" in entry["error_message"]
        finally:
            r.stop(1)


def test_a_record_refused_with_its_batch_is_sent_alone_once_then_dead_lettered(tmp_path: Path) -> None:
    # "big" is refused alone too; "small" only with its batch.
    service = ScriptedService(
        lambda v, n: Failure.RETRY_ALONE if (v == b"big" or (v == b"small" and n == 0)) else None
    )
    r, store = runner(tmp_path, service)
    try:
        c = chunk("small", "big")
        r.send([c])
        wait_until(lambda: c.done, 5, "the acknowledgement")
        assert sorted(service.sent_alone) == [b"big", b"small"]
        assert (r.delivered, r.parked, reasons(store)) == (1, 1, {"send_error": 1})
    finally:
        r.stop(1)


def test_a_timed_out_record_is_parked_or_sent_again_as_the_policy_says(tmp_path: Path) -> None:
    for park in (True, False):
        service = ScriptedService(lambda v, n: Failure.TIMEOUT if v == b"late" and n == 0 else None)
        r, store = runner(tmp_path / str(park), service, park_on_timeout=park)
        try:
            c = chunk("late")
            r.send([c])
            wait_until(lambda c=c: c.done, 5, "the acknowledgement")
            if park:
                assert (r.parked, reasons(store), service.attempts[b"late"]) == (1, {"timeout": 1}, 1)
            else:
                assert (r.parked, r.delivered, service.attempts[b"late"]) == (0, 1, 2)
        finally:
            r.stop(1)


def test_records_the_service_refuses_before_sending_are_parked_at_once(tmp_path: Path) -> None:
    service = ScriptedService(lambda _v, _n: None, refuse="huge")
    r, store = runner(tmp_path, service)
    try:
        c = chunk("ok", "huge line")
        r.send([c])
        wait_until(lambda: c.done, 5, "the acknowledgement")
        assert (r.delivered, r.parked, reasons(store)) == (1, 1, {"message_too_large": 1})
        assert r.outstanding == 0
        # The refused record is not counted as produced to its topic.
        assert r.delivered_by_topic == {"t": 1}
        assert sample(r, "kafka_messages_produced_total", topic="t", status="success") == 1
    finally:
        r.stop(1)


def test_a_stalled_sink_overflows_what_waits_at_the_emergency_level(tmp_path: Path) -> None:
    # Nothing is ever acknowledged (the service holds every record): the sink stalls.
    service = ScriptedService(lambda _v, _n: Failure.RETRY)
    r, store = runner(
        tmp_path,
        service,
        queue_size=10,
        timeout=0.3,
        backpressure=BackpressureConfig(timeout_escalation=False),
    )
    try:
        first = chunk(*[f"line {i}" for i in range(9)])  # 9 of 10: past the critical level
        r.send([first])
        assert not r.accepting(), "the sources are held from the critical level on"
        late = chunk("one", "two")  # 9 + 2 > 9.5: waits, then overflows once stalled
        r.send([late])
        assert late.done and not first.done
        assert (r.overflowed, reasons(store)) == (2, {"backpressure": 2})
    finally:
        r.stop(0.1)


def test_the_back_off_doubles_to_its_ceiling_and_jitter_shortens_it_by_at_most_half() -> None:
    assert [backoff(n, 1.0) for n in range(4)] == [0.25, 0.5, 1.0, 2.0]
    assert backoff(20, 1.0) == RETRY_MAX_DELAY
    assert backoff(5_000, 1.0) == RETRY_MAX_DELAY  # days of an outage: no OverflowError
    assert backoff(3, 0.5) == 1.0


def test_a_failed_batch_is_retried_together_and_batches_failed_at_once_spread_apart(
    tmp_path: Path,
) -> None:
    r, _ = runner(tmp_path, ScriptedService(lambda _v, _n: None))
    try:
        deliveries = [Delivery(r, chunk("x", "y", "z"), collections.Counter(t=3)) for _ in range(2)]
        before = time.monotonic()
        for d in deliveries:
            for line in d.chunk.lines:
                # A sixth attempt failed: the next waits 8-16 s, far beyond this test.
                r.failed(d, Record("t", line.encode(), None), Failure.RETRY, "x", "refused", attempt=6)
        after = time.monotonic()
        waits: dict[int, list[float]] = {}
        for a in r._retries:
            waits.setdefault(id(a.delivery), []).append(a.due)
        assert len(waits) == 2 and all(len(w) == 3 for w in waits.values())
        for d in deliveries:
            assert 0.5 <= d.jitter <= 1.0
            due = waits[id(d)]
            assert max(due) - min(due) <= after - before  # one wait for the whole batch
            assert before + backoff(6, d.jitter) <= min(due) <= after + backoff(6, d.jitter)
        assert deliveries[0].jitter != deliveries[1].jitter  # two batches, two waits
    finally:
        r.stop(1)


class GroupingService(ScriptedService):
    """A ScriptedService that takes small chunks as one (``prepare_many``), as the Kafka sink
    does; ``groups`` keeps the lines of each group it made, ``mode`` says what it does."""

    def __init__(self, script: Script, mode: str = "group", grouping: bool = True) -> None:
        super().__init__(script)
        self.mode = mode
        self.grouping = grouping
        self.groups: list[list[str]] = []
        self.prepared: list[list[str]] = []
        #: At each hand-over: the records the engine counted as produced beyond those handed over
        #: before and this one (chunks admitted ahead of their hand-over).
        self.admitted_ahead: list[int] = []
        self._handed = 0

    def send(self, prepared: Any, delivery: Delivery) -> list[Refused]:
        runner = self.runner
        assert runner is not None
        self._handed += len(prepared.records)
        self.admitted_ahead.append(runner.produced - self._handed)
        return super().send(prepared, delivery)

    def prepare(self, chunk: Chunk) -> Prepared:
        self.prepared.append(list(chunk.lines))
        return Prepared(chunk)

    def prepare_many(self, group: ChunkGroup) -> Prepared | None:
        if self.mode == "raise":
            raise RuntimeError("a bug in prepare_many")
        if self.mode == "none":
            return None
        self.groups.append(list(group.lines))
        return Prepared(group)


def file_chunk(path: str, *lines: str) -> Chunk:
    c = Chunk(Origin("file", path), list(lines))
    Analyzer(None).analyze(c)
    c.expect(len(lines), None)
    return c


def test_small_chunks_of_several_origins_are_delivered_as_one_and_each_acknowledged_in_full(
    tmp_path: Path,
) -> None:
    held = threading.Event()

    def script(value: bytes, attempt: int) -> Failure | None:
        # One record fails once: no chunk of the group is acknowledged before it is delivered.
        if value == b"b2" and attempt == 0:
            held.set()
            return Failure.RETRY
        return None

    service = GroupingService(script)
    r, _ = runner(tmp_path, service)
    try:
        chunks = [file_chunk(f"/{name}.log", f"{name}1", f"{name}2") for name in "abc"]
        r.send(chunks)
        assert held.wait(5), "the failed attempt"
        assert not any(c.done for c in chunks)  # its retry comes 0.125-0.25 s later
        wait_until(lambda: all(c.done for c in chunks), 5, "the acknowledgements")
        assert service.groups == [["a1", "a2", "b1", "b2", "c1", "c2"]] and service.prepared == []
        assert all(c.pending == 0 for c in chunks), "each chunk acknowledged once, in full"
        assert (r.delivered, r.outstanding, r.parked) == (6, 0, 0)
        assert sample(r, "kafka_batch_size_messages_count", topic="t") == 1
        assert sample(r, "logs_sent_total", sink_type="test", status="success") == 6
    finally:
        r.stop(1)


def test_a_chunk_that_is_not_small_goes_alone_between_groups_in_order(tmp_path: Path) -> None:
    service = GroupingService(lambda _v, _n: None)
    r, _ = runner(tmp_path, service)
    try:
        big = file_chunk("/big.log", *[f"big {i}" for i in range(SMALL_CHUNK + 1)])
        chunks = [file_chunk("/a.log", "a"), file_chunk("/b.log", "b"), big, file_chunk("/c.log", "c")]
        r.send(chunks)
        wait_until(lambda: all(c.done for c in chunks), 5, "the acknowledgements")
        # A group of two; the big chunk alone; the last small chunk alone (a group of one).
        assert service.groups == [["a", "b"]]
        assert service.prepared == [big.lines, ["c"]]
        assert r.delivered == SMALL_CHUNK + 4
    finally:
        r.stop(1)


def test_a_group_is_handed_over_before_a_chunk_waits_for_room(tmp_path: Path) -> None:
    # Room for 9.5 records: the third chunk does not fit with the first two, so they are handed
    # over (not held while it waits for the room they take) and it goes once they are delivered.
    service = GroupingService(lambda _v, _n: None)
    r, _ = runner(tmp_path, service, queue_size=10)
    try:
        chunks = [file_chunk(f"/{i}.log", *[f"{i}-{j}" for j in range(4)]) for i in range(3)]
        r.send(chunks)
        wait_until(lambda: all(c.done for c in chunks), 5, "the acknowledgements")
        assert service.groups == [[f"{i}-{j}" for i in range(2) for j in range(4)]]
        assert service.prepared == [chunks[2].lines]
        assert (r.delivered, r.overflowed) == (12, 0)
    finally:
        r.stop(1)


def test_chunks_the_service_does_not_group_or_fails_to_group_go_one_by_one(tmp_path: Path) -> None:
    for mode in ("none", "raise"):
        service = GroupingService(lambda _v, _n: None, mode)
        r, _ = runner(tmp_path / mode, service)
        try:
            chunks = [file_chunk("/a.log", "a"), file_chunk("/b.log", "b")]
            r.send(chunks)
            wait_until(lambda chunks=chunks: all(c.done for c in chunks), 5, "the acknowledgements")
            assert service.prepared == [["a"], ["b"]] and service.groups == []
            errors = sample(r, "errors_total", component="test", error_type="prepare_failed")
            assert errors == (1 if mode == "raise" else None)
        finally:
            r.stop(1)


def test_a_service_that_does_not_group_gets_each_chunk_admitted_only_as_it_is_handed_over(
    tmp_path: Path,
) -> None:
    # Exactly-once's commit waits for every record the engine admitted: a chunk admitted and held
    # back while another is handed over would hold the commit until the sink's timeout.
    service = GroupingService(lambda _v, _n: None, grouping=False)
    r, _ = runner(tmp_path, service)
    try:
        chunks = [file_chunk(f"/{i}.log", f"{i}") for i in range(5)]
        r.send(chunks)
        wait_until(lambda: all(c.done for c in chunks), 5, "the acknowledgements")
        assert service.groups == [] and len(service.prepared) == 5
        assert service.admitted_ahead == [0] * 5
        grouped = GroupingService(lambda _v, _n: None)
        g, _ = runner(tmp_path / "grouped", grouped)
        try:
            more = [file_chunk(f"/{i}.log", f"{i}") for i in range(5)]
            g.send(more)
            wait_until(lambda: all(c.done for c in more), 5, "the acknowledgements")
            assert len(grouped.groups) == 1 and grouped.admitted_ahead == [0]
        finally:
            g.stop(1)
    finally:
        r.stop(1)
