"""The sink conformance suite: every scenario runs against every sink's real server (one harness per
sink, see harness.py), through the agent's own parts: the sink built from its config section by the
registry, the real dispatcher and analyzer, checkpoints that move on acknowledgements, the local
dead-letter store; and, for kill -9, the agent itself as a process with a file source.

What every sink must do (exact counts, so that each scenario can fail):

- start/stop: lines sent before a stop are delivered by it, its threads end;
- a stop while the server is away: nothing counted as delivered, nothing acknowledged unless parked;
- a batch: every line delivered exactly once, in the order the sink promises, acknowledged, counted;
- a partial failure: the records the server refuses for their own sake are dead-lettered (the
  sink's own output, else the local store) with their reason, the rest delivered; all acknowledged;
- a retriable failure (the server away for less than the timeouts): nothing lost or parked, no
  acknowledgement before the server was back;
- the server away for longer than the timeouts: every line delivered after it returns or parked,
  and a checkpoint never passes a line that was neither;
- a saturated sink: ``accepting()`` turns false, the source is held (stops reading), what the sink
  and the dispatcher hold stays within their bounds; everything delivered once the server answers;
- saturated past its timeout: what waits overflows to the DLQ, nothing is lost;
- kill -9 of the agent, twice, while a file grows: every line arrives, duplicates within the window
  of lines read but not yet checkpointed;
- parallel senders: several sources and dispatcher threads at once, all delivered and acknowledged;
  eight threads sending at once on a small queue never take the sink past its emergency level.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from log_capturer.app import key_field_of
from log_capturer.config.schema import Config
from log_capturer.devtools.kafka_local import free_port
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.processing import Analyzer
from log_capturer.record import Chunk, Origin, ReleasedLines
from log_capturer.registry import sink_components
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.sinks.base import Sink, SinkContext
from tests.conformance.harness import DeadLetter, Received, SinkHarness
from tests.integration.reliability.conftest import generate
from tests.support import AgentProcess, wait_until, write_config

pytestmark = pytest.mark.integration


class Rig:
    """A sink built as the agent builds it (registry, SinkContext), behind the real dispatcher,
    with the local dead-letter store in ``tmp/dlq``."""

    def __init__(
        self,
        harness: SinkHarness,
        tmp: Path,
        delivery: Mapping[str, Any] | None = None,
        dispatcher: Mapping[str, Any] | None = None,
    ) -> None:
        self.harness = harness
        self.config = Config.model_validate(
            {
                "sinks": {harness.section: harness.config(delivery)},
                "dispatcher": {
                    "dlq_config": {"directory": str(tmp / "dlq")},
                    "batch_timeout": "10ms",
                    **(dispatcher or {}),
                },
            }
        )
        self.metrics = Metrics()
        self.store = DeadLetterStore(self.config.dispatcher.dlq_config, self.metrics)
        ctx = SinkContext(self.config, self.metrics, self.store)
        built = [
            sink
            for key, section, comp in sink_components(self.config.sinks)
            if key == harness.section and (sink := comp.build(section, ctx)) is not None
        ]
        assert len(built) == 1, f"sinks.{harness.section} built {built}"
        self.sink: Sink = built[0]
        analyzer = Analyzer(key_field_of(self.config))
        self.dispatcher = Dispatcher(self.config.dispatcher, [self.sink], analyzer, self.metrics)
        self._started = False
        #: Every chunk submitted, to check that each line was acknowledged exactly once.
        self.chunks: list[Chunk] = []
        self._chunks_lock = threading.Lock()

    def __enter__(self) -> Rig:
        self.sink.start()
        self.dispatcher.start()
        self._started = True
        return self

    def __exit__(self, *_: object) -> None:
        if self._started:
            self.stop(5)

    def stop(self, timeout: float = 60) -> None:
        self._started = False
        self.dispatcher.close(timeout)
        self.sink.stop(timeout)

    def feed(
        self, origin: Origin, lines: list[str], checkpoint: Checkpoint, size: int, start: int = 0
    ) -> list[Chunk]:
        """Submit ``lines`` in chunks of ``size`` (positions: line numbers from ``start``) as a source
        does, blocking while the dispatcher or the sink holds it."""
        chunks = []
        for i in range(0, len(lines), size):
            chunk = Chunk(
                origin, lines[i : i + size], start=start + i, end=start + i + len(lines[i : i + size])
            )
            assert self.dispatcher.submit(chunk, checkpoint, timeout=120), "the source was held for 120 s"
            chunks.append(chunk)
        self.submitted(chunks)
        return chunks

    def submitted(self, chunks: list[Chunk]) -> None:
        with self._chunks_lock:
            self.chunks += chunks

    def assert_acknowledged_once(self) -> None:
        """Every line of every chunk acknowledged exactly once: no chunk waits, none was
        acknowledged more often than it has lines (its count would be below zero)."""
        waiting = [c.start for c in self.chunks if not c.done]
        over = [(c.start, c.pending) for c in self.chunks if c.pending < 0]
        assert not waiting, f"chunks at {waiting[:5]} not acknowledged"
        assert not over, f"chunks acknowledged more than once (position, count): {over[:5]}"
        # A sink that holds its records encoded lets the chunks' text go once it took them (and
        # still delivers or parks every line: the checks of each test); one that does not keeps it.
        releases = self.sink.releases_text
        kept = [c.start for c in self.chunks if isinstance(c.lines, ReleasedLines) is not releases]
        assert not kept, f"chunks at {kept[:5]}: text {'kept' if releases else 'dropped'}"

    def parked(self) -> list[dict[str, Any]]:
        """Every entry of the local dead-letter store."""
        return self.store.select(due_only=False)

    def dead(self) -> list[DeadLetter]:
        """What was dead-lettered: the sink's own output and the local store."""
        local = [
            DeadLetter(str(e["original_entry"]["message"]), str(e["error_type"]), str(e["error_message"]))
            for e in self.parked()
        ]
        return self.harness.dead_letters() + local

    def sent(self, status: str) -> float:
        """``logs_sent_total`` of the sink with ``status`` (success, dlq)."""
        sink_type = self.sink.sink_type
        value = self.metrics.registry.get_sample_value(
            "logs_sent_total", {"sink_type": sink_type, "status": status}
        )
        return value or 0.0

    def stats(self) -> dict[str, Any]:
        return dict(self.sink.stats())


def lines_of(origin: str, n: int, first: int = 0) -> list[str]:
    return [f"INFO {origin} line {i:06d}" for i in range(first, first + n)]


def origin(name: str) -> Origin:
    return Origin("file", f"/var/log/conformance/{name}.log")


def messages(records: Iterable[Received | DeadLetter]) -> Counter[str]:
    return Counter(r.message for r in records)


def assert_once(received: list[Received], expected: list[str]) -> None:
    """Every expected line exactly once, nothing else."""
    got = messages(received)
    missing = [m for m in expected if m not in got]
    twice = {m: n for m, n in got.items() if n > 1}
    extra = set(got) - set(expected)
    assert not missing, f"{len(missing)} lines lost, e.g. {short(missing)}"
    assert not twice, f"{len(twice)} lines delivered more than once, e.g. {short(twice.items())}"
    assert not extra, f"{len(extra)} lines nobody sent, e.g. {short(sorted(extra))}"
    assert len(received) == len(expected)


def short(items: Iterable[Any]) -> list[str]:
    """The first three, each cut to 80 characters (some lines are 8 kB)."""
    return [str(x)[:80] for x in list(items)[:3]]


def assert_order(harness: SinkHarness, received: list[Received], sent: Mapping[str, list[str]]) -> None:
    """As promised by the sink: an origin's lines in one stream, in the order they were read."""
    if harness.order == "none":
        return
    by_origin: dict[str, list[Received]] = defaultdict(list)
    for r in received:
        by_origin[r.origin].append(r)
    for source_id, lines in sent.items():
        got = by_origin[source_id]
        streams = {r.stream for r in got}
        assert len(streams) == 1, f"{source_id}: its lines went to {len(streams)} streams: {sorted(streams)}"
        in_order = [r.message for r in sorted(got, key=lambda r: r.position)]
        assert in_order == [m for m in lines if m in set(in_order)], f"{source_id}: lines out of order"


def wait_committed(checkpoints: Mapping[Checkpoint, int], timeout: float, what: str) -> None:
    wait_until(lambda: all(cp.committed == end for cp, end in checkpoints.items()), timeout, what)


def sink_threads(sink: Sink) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"{sink.name}-") and t.is_alive()]


# -- the scenarios -------------------------------------------------------------------------------


def test_start_and_stop(harness: SinkHarness, tmp_path: Path) -> None:
    """Started, healthy; lines sent just before a stop are delivered by the stop; its threads end."""
    rig = Rig(harness, tmp_path)
    before = set(sink_threads(rig.sink))
    with rig:
        wait_until(lambda: rig.sink.health().status == "healthy", 30, "a healthy sink")
        assert sink_threads(rig.sink), "the sink runs a thread once started"
        o, cp = origin("a"), Checkpoint()
        sent = lines_of("a", 25)
        rig.feed(o, sent, cp, size=5)
        rig.stop(60)
        assert cp.committed == 25 and cp.acked_lines == 25, "the stop waited for every acknowledgement"
        stats = rig.stats()
        rig.assert_acknowledged_once()
        assert stats["outstanding"] == 0 and stats["delivered"] == 25, stats
        assert rig.sent("success") == 25
        assert set(sink_threads(rig.sink)) <= before, f"threads left: {sink_threads(rig.sink)}"
    assert_once(harness.received(25), sent)
    assert rig.parked() == []


def test_a_stop_while_the_server_is_away_acknowledges_only_what_it_parked(
    harness: SinkHarness, tmp_path: Path
) -> None:
    """Lines the sink could not deliver before a stop stay unacknowledged (a restart reads them
    again) unless they were parked; none counts as delivered."""
    delivery = {"timeout": "120s"}
    warm, cp_warm = lines_of("warm", 10), Checkpoint()
    sent, cp = lines_of("a", 100), Checkpoint()
    rig = Rig(harness, tmp_path, delivery)
    with rig:
        rig.feed(origin("warm"), warm, cp_warm, size=10)
        wait_committed({cp_warm: 10}, 60, "the first lines delivered")
        harness.make_unavailable()
        rig.feed(origin("a"), sent, cp, size=10)
        wait_until(lambda: rig.stats()["produced"] == 110, 60, "the lines handed to the sink")
        rig.stop(3)
        stats = rig.stats()
    parked = {str(e["original_entry"]["message"]) for e in rig.parked()}
    acknowledged = [
        m for c in rig.chunks if c.done and c.origin.source_id == origin("a").source_id for m in c.lines
    ]
    print(
        orjson.dumps(
            {"parked": len(parked), "acknowledged": len(acknowledged), "committed": cp.committed}
        ).decode()
    )
    assert set(acknowledged) <= parked, (
        f"acknowledged but neither delivered nor parked: {short(set(acknowledged) - parked)}"
    )
    assert cp.committed <= len(parked), cp.committed
    assert stats["delivered"] == 10, stats
    assert rig.sent("success") == 10
    harness.make_available()
    received = harness.received(10)
    assert not {r.message for r in received} & parked, "a line both delivered and parked"
    assert_once([r for r in received if r.origin == origin("warm").source_id], warm)


def test_a_batch_is_delivered_once_in_order(harness: SinkHarness, tmp_path: Path) -> None:
    names = ["a", "b", "c", "d"]
    sent = {origin(n).source_id: lines_of(n, 500) for n in names}
    checkpoints = {Checkpoint(): 500 for _ in names}
    with Rig(harness, tmp_path) as rig:
        for n, cp in zip(names, checkpoints, strict=True):
            rig.feed(origin(n), sent[origin(n).source_id], cp, size=50)
        wait_committed(checkpoints, 60, "every line acknowledged")
        stats = rig.stats()
        rig.assert_acknowledged_once()
    everything = [m for lines in sent.values() for m in lines]
    received = harness.received(len(everything))
    assert_once(received, everything)
    assert_order(harness, received, sent)
    assert stats["delivered"] == 2000 and stats["parked"] == 0 and stats["outstanding"] == 0, stats
    assert rig.sent("success") == 2000 and rig.sent("dlq") == 0
    assert rig.dead() == []


def test_a_partial_failure_delivers_the_rest_and_parks_the_refused_with_their_reason(
    harness: SinkHarness, tmp_path: Path
) -> None:
    harness.refuse()
    refused = [harness.refused_line(i) for i in range(3)]
    good = lines_of("a", 300)
    sent = [*good[:50], refused[0], *good[50:150], refused[1], *good[150:250], refused[2], *good[250:]]
    cp = Checkpoint()
    with Rig(harness, tmp_path) as rig:
        rig.feed(origin("a"), sent, cp, size=25)
        wait_committed({cp: len(sent)}, 90, "every line acknowledged (delivered or parked)")
        stats = rig.stats()
        rig.assert_acknowledged_once()
        dead = rig.dead()
    received = harness.received(len(good))
    assert_once(received, good)
    assert_order(harness, received, {origin("a").source_id: good})
    assert sorted(messages(dead).elements()) == sorted(refused), short(dead)
    for d in dead:
        assert d.reason == harness.refused_reason, d
        assert harness.refused_text.lower() in d.text.lower(), d
    assert cp.acked_lines == len(sent)
    assert stats["delivered"] == 300, stats
    assert stats["parked"] + stats.get("sent_to_dlq_topic", 0) == 3, stats
    assert rig.sent("success") == 300 and rig.sent("dlq") == 3


class TimedCheckpoint(Checkpoint):
    """A checkpoint that notes when each of its chunks (by start position) was acknowledged."""

    __slots__ = ("done_at",)

    def __init__(self) -> None:
        super().__init__()
        self.done_at: dict[int, float] = {}

    def on_chunk_done(self, chunk: Chunk) -> None:
        self.done_at[chunk.start] = time.monotonic()
        super().on_chunk_done(chunk)


def test_a_retriable_failure_recovers_without_loss_and_acknowledges_only_after_delivery(
    harness: SinkHarness, tmp_path: Path
) -> None:
    # Longer than the outage: nothing may time out; the breaker tries again soon after it.
    delivery = {"timeout": "120s", "circuit_breaker": {"timeout": "1s"}}
    warm, cp_warm = lines_of("warm", 10), Checkpoint()
    sent, cp = lines_of("a", 200), TimedCheckpoint()
    with Rig(harness, tmp_path, delivery) as rig:
        rig.feed(origin("warm"), warm, cp_warm, size=10)
        wait_committed({cp_warm: 10}, 60, "the first lines delivered")
        harness.make_unavailable()
        feeder = threading.Thread(
            target=lambda: rig.feed(origin("a"), sent, cp, size=20), name="conformance-feeder", daemon=True
        )
        feeder.start()
        wait_until(lambda: rig.sink.health().status != "healthy", 60, "the sink to see the server gone")
        parked_early = rig.parked()
        back_at = time.monotonic()
        harness.make_available()
        feeder.join(120)
        assert not feeder.is_alive(), "the source is still held after the server returned"
        wait_committed({cp: 200}, 120, "every line acknowledged after the server returned")
        stats = rig.stats()
        rig.assert_acknowledged_once()
    early = sorted(start for start, at in cp.done_at.items() if at < back_at)
    assert not early, f"chunks at {early} acknowledged while the server was away"
    assert len(cp.done_at) == 10
    assert parked_early == [] and rig.parked() == [], "nothing may be parked for a short outage"
    received = harness.received(210)
    assert_once(received, warm + sent)
    assert_order(harness, received, {origin("a").source_id: sent})
    assert stats["delivered"] == 210 and stats["parked"] == 0, stats
    assert rig.sent("success") == 210 and rig.sent("dlq") == 0


@pytest.mark.parametrize("timed_out", ["parked", "sent-again", "breaker-parks"])
def test_the_server_gone_longer_than_the_timeouts_loses_nothing(
    timed_out: str, harness: SinkHarness, tmp_path: Path
) -> None:
    """``parked``: what times out is parked (``dlq_config.send_on_timeout``, the default where a sink
    has it); ``sent-again``: it is sent again until the server takes it; ``breaker-parks``: sent
    again, and once the breaker opens new lines are parked (``open_action: dlq``)."""
    timeout = 2.0
    delivery: dict[str, Any] = {"timeout": f"{timeout:g}s", "circuit_breaker": {"timeout": "1s"}}
    if timed_out != "parked":
        delivery["dlq_config"] = {"send_on_timeout": False}
    if timed_out == "breaker-parks":
        delivery["circuit_breaker"] = {"timeout": "2s", "failure_threshold": 3, "open_action": "dlq"}
    warm, cp_warm = lines_of("warm", 10), Checkpoint()
    sent, cp = lines_of("a", 300), Checkpoint()
    after, cp_after = lines_of("after", 50), Checkpoint()
    violations: list[str] = []
    stop_watch = threading.Event()
    chunks: list[Chunk] = []

    with Rig(harness, tmp_path, delivery) as rig:

        def watch() -> None:
            """While the server is away, every line the checkpoint passed must be parked."""
            while not stop_watch.wait(0.2):
                committed = cp.committed
                parked = {str(e["original_entry"]["message"]) for e in rig.parked()}
                passed = [m for m in sent[:committed] if m not in parked]
                if passed:
                    violations.append(
                        f"checkpoint at {committed} passed {len(passed)} lines, e.g. {passed[0]}"
                    )

        rig.feed(origin("warm"), warm, cp_warm, size=10)
        wait_committed({cp_warm: 10}, 60, "the first lines delivered")
        harness.make_unavailable()

        def feed() -> None:
            """The first 90 lines, then (breaker-parks) the rest once the breaker opened: lines
            already in the sink stay there, only new ones are parked while it is open."""
            chunks.extend(rig.feed(origin("a"), sent[:90], cp, size=30))
            if timed_out == "breaker-parks":
                wait_until(breaker_open, 60, "the breaker to open")
            chunks.extend(rig.feed(origin("a"), sent[90:], cp, size=30, start=90))

        def breaker_open() -> bool:
            return rig.stats()["circuit_breaker"]["state"] == "open"

        feeder = threading.Thread(target=feed, name="conformance-feeder", daemon=True)
        watcher = threading.Thread(target=watch, name="conformance-watcher", daemon=True)
        watcher.start()
        feeder.start()
        # Away for longer than the timeouts (several of them); parked lines may be acknowledged.
        gone = time.monotonic()
        wait_until(
            lambda: (
                time.monotonic() - gone > 3 * timeout
                and (timed_out == "sent-again" or rig.stats()["parked"] >= 60)
            ),
            90,
            "lines timing out",
        )
        stop_watch.set()
        watcher.join(10)
        harness.make_available()
        feeder.join(180)
        assert not feeder.is_alive(), "the source is still held after the server returned"
        wait_committed({cp: 300}, 180, "every line acknowledged after the server returned")
        # Recovered: the breaker closes (trial calls, or a probe while there is nothing to send);
        # lines that come while it is still open may be parked, so only then come the next ones.
        wait_until(lambda: rig.stats()["circuit_breaker"]["state"] == "closed", 60, "the breaker to close")
        rig.feed(origin("after"), after, cp_after, size=10)
        wait_committed({cp_after: 50}, 120, "lines sent after the return delivered")
        stats = rig.stats()
        rig.assert_acknowledged_once()
        parked = rig.parked()
    assert not violations, violations[:3]
    parked_lines = Counter(str(e["original_entry"]["message"]) for e in parked)
    received = harness.received(60 + 300 - sum(parked_lines.values()))
    got = messages(received)
    assert all(n == 1 for n in parked_lines.values()), "a line parked twice"
    assert not set(parked_lines) & set(got), "a line both delivered and parked"
    assert_once(received, [m for m in warm + sent + after if m not in parked_lines])
    assert not set(after) & set(parked_lines), "lines sent after the recovery were parked"
    for e in parked:
        assert e["error_type"] in ("timeout", "backpressure", "circuit_open"), e
        assert e["error_message"], e
    reasons = Counter(str(e["error_type"]) for e in parked)
    print(
        orjson.dumps(
            {"parked": dict(reasons), "delivered": stats["delivered"], "retried": stats["retried"]}
        ).decode()
    )
    if timed_out == "breaker-parks":
        assert reasons["circuit_open"] > 0 and reasons["timeout"] == 0, reasons
    elif timed_out == "sent-again":
        assert reasons["timeout"] == 0, reasons
    assert stats["delivered"] == len(received) and stats["parked"] == len(parked), stats
    assert rig.sent("success") == len(received) and rig.sent("dlq") == len(parked)


def test_a_saturated_sink_holds_the_sources_within_bounds(harness: SinkHarness, tmp_path: Path) -> None:
    queue, dispatcher_queue, chunk_size = 200, 300, 20
    critical, emergency = 0.9, 0.95
    delivery = {
        "queue_size": queue,
        "timeout": "120s",
        "circuit_breaker": {"enabled": False},
        "backpressure_config": {"queue_critical_threshold": critical, "queue_emergency_threshold": emergency},
    }
    dispatcher = {"queue_size": dispatcher_queue, "batch_size": 100, "worker_count": 1}
    sent, cp = lines_of("a", 3000), Checkpoint()
    warm, cp_warm = lines_of("warm", 10), Checkpoint()
    state = {"taken": 0, "held": 0}
    stop = threading.Event()

    with Rig(harness, tmp_path, delivery, dispatcher) as rig:

        def source() -> None:
            """Reads a chunk only once the previous one was taken, as the file source does."""
            o = origin("a")
            for i in range(0, len(sent), chunk_size):
                chunk = Chunk(o, sent[i : i + chunk_size], start=i, end=i + chunk_size)
                while not rig.dispatcher.submit(chunk, cp, timeout=0.1):
                    state["held"] += 1
                    if stop.is_set():
                        return
                rig.submitted([chunk])
                state["taken"] += chunk_size

        rig.feed(origin("warm"), warm, cp_warm, size=10)
        wait_committed({cp_warm: 10}, 60, "the first lines delivered")
        harness.saturate()
        reader = threading.Thread(target=source, name="conformance-source", daemon=True)
        try:
            reader.start()
            wait_until(lambda: state["held"] >= 1, 60, "the source to be held")
            taken = state["taken"]
            held = state["held"]
            wait_until(lambda: state["held"] >= held + 10, 30, "the source held for ten more tries")
            assert state["taken"] == taken, "the source kept reading while held"
            assert not rig.sink.accepting(), "a saturated sink must not accept lines"
            stats = rig.stats()
            health = rig.sink.health()
            room = int(queue * emergency)
            assert queue * critical <= stats["outstanding"] <= room, stats
            assert rig.dispatcher.queue.size <= dispatcher_queue
            assert taken <= room + dispatcher_queue + 100 + chunk_size, (taken, stats)
            assert health.status != "healthy", health
            assert cp.acked_lines == 0
            print(
                orjson.dumps(
                    {"taken": taken, "held": state["held"], "outstanding": stats["outstanding"]}
                ).decode()
            )
        finally:
            harness.release()
        reader.join(120)
        stop.set()
        assert not reader.is_alive(), "the source is still held after the server answered again"
        wait_committed({cp: 3000}, 120, "every line acknowledged")
        final = rig.stats()
        rig.assert_acknowledged_once()
    received = harness.received(3010)
    assert_once(received, warm + sent)
    assert_order(harness, received, {origin("a").source_id: sent})
    assert final["delivered"] == 3010 and final["parked"] == 0, final
    assert rig.parked() == []


def test_a_sink_saturated_past_its_timeout_overflows_to_the_dlq_and_loses_nothing(
    harness: SinkHarness, tmp_path: Path
) -> None:
    """The server paused for longer than ``timeout``: the lines waiting for room overflow to the
    local DLQ (``backpressure``), what the sink held times out (parked, or sent again), the source
    moves on; once the server answers, every line was delivered or parked. A line may be both (the
    paused server took a record whose wait had already timed out): at most what the sink held."""
    queue, timeout = 200, 3.0
    delivery = {
        "queue_size": queue,
        "timeout": f"{timeout:g}s",
        "circuit_breaker": {"enabled": False},
        "backpressure_config": {"queue_critical_threshold": 0.9, "queue_emergency_threshold": 0.95},
    }
    dispatcher = {"queue_size": 300, "batch_size": 100, "worker_count": 1}
    warm, cp_warm = lines_of("warm", 10), Checkpoint()
    sent, cp = lines_of("a", 1000), Checkpoint()
    with Rig(harness, tmp_path, delivery, dispatcher) as rig:
        rig.feed(origin("warm"), warm, cp_warm, size=10)
        wait_committed({cp_warm: 10}, 60, "the first lines delivered")
        harness.saturate()
        try:
            feeder = threading.Thread(
                target=lambda: rig.feed(origin("a"), sent, cp, size=20),
                name="conformance-feeder",
                daemon=True,
            )
            feeder.start()
            wait_until(lambda: rig.stats()["overflowed_to_dlq"] > 0, 90, "lines overflowing to the DLQ")
        finally:
            harness.release()
        feeder.join(120)
        assert not feeder.is_alive(), "the source is still held after the server answered again"
        wait_committed({cp: 1000}, 120, "every line acknowledged")
        stats = rig.stats()
        rig.assert_acknowledged_once()
    parked = Counter(str(e["original_entry"]["message"]) for e in rig.parked())
    reasons = Counter(str(e["error_type"]) for e in rig.parked())
    assert set(reasons) <= {"backpressure", "timeout"}, reasons
    assert reasons["backpressure"] == stats["overflowed_to_dlq"] > 0, (reasons, stats)
    assert all(n == 1 for n in parked.values()), "a line parked twice"
    received = harness.received(10 + 1000 - len(parked))
    got = messages(received)
    lost = [m for m in warm + sent if m not in got and m not in parked]
    assert not lost, f"{len(lost)} lines lost, e.g. {short(lost)}"
    assert all(n == 1 for n in got.values()), "a line delivered twice"
    both = set(got) & set(parked)
    assert len(both) <= queue, f"{len(both)} lines both delivered and parked (the sink held at most {queue})"
    # A line both delivered and parked counts as parked: its outcome was the timeout.
    assert stats["delivered"] == len(received) - len(both), stats
    assert stats["parked"] == len(parked) and rig.sent("dlq") == len(parked), stats
    print(orjson.dumps({"parked": dict(reasons), "received": len(received), "both": len(both)}).decode())


def test_parallel_senders_all_delivered_and_acknowledged(harness: SinkHarness, tmp_path: Path) -> None:
    names = [f"p{i}" for i in range(6)]
    sent = {n: lines_of(n, 600) for n in names}
    checkpoints = {n: Checkpoint() for n in names}
    with Rig(harness, tmp_path, dispatcher={"worker_count": 4, "batch_size": 50}) as rig:
        threads = [
            threading.Thread(
                target=rig.feed,
                args=(origin(n), sent[n], checkpoints[n], 10),
                name=f"conformance-{n}",
                daemon=True,
            )
            for n in names
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        wait_committed({cp: 600 for cp in checkpoints.values()}, 120, "every line acknowledged")
        stats = rig.stats()
        rig.assert_acknowledged_once()
    total = 600 * len(names)
    received = harness.received(total)
    assert_once(received, [m for lines in sent.values() for m in lines])
    assert_order(harness, received, {origin(n).source_id: sent[n] for n in names})
    assert all(cp.acked_lines == 600 and cp.in_flight_lines == 0 for cp in checkpoints.values())
    assert stats["delivered"] == total and stats["outstanding"] == 0, stats
    assert stats["produced"] == total, stats
    assert rig.sent("success") == total


def test_parallel_senders_on_a_small_queue_never_overfill_it(harness: SinkHarness, tmp_path: Path) -> None:
    """Eight threads call ``send`` at once on a queue of 100 records: chunks wait for room in turn,
    the sink never holds more than its emergency level, every line is delivered once."""
    queue, emergency, threads_n, per_thread, size = 100, 0.95, 8, 40, 10
    delivery = {
        "queue_size": queue,
        "backpressure_config": {"queue_critical_threshold": 0.9, "queue_emergency_threshold": emergency},
    }
    rig = Rig(harness, tmp_path, delivery)
    analyzer = Analyzer(key_field_of(rig.config))
    acked: Counter[int] = Counter()
    acked_lock = threading.Lock()
    peak = [0]
    done = threading.Event()

    def on_done(chunk: Chunk) -> None:
        with acked_lock:
            acked[id(chunk)] += 1

    def sender(n: int) -> None:
        o = origin(f"s{n}")
        lines = lines_of(f"s{n}", per_thread * size)
        for i in range(0, len(lines), size):
            chunk = Chunk(o, lines[i : i + size], start=i, end=i + size)
            analyzer.analyze(chunk)
            chunk.expect(size, on_done)
            rig.submitted([chunk])
            rig.sink.send([chunk])
            if rig.sink.releases_text:  # as the dispatcher does, while the records are in flight
                chunk.release_text()

    def watch() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], int(rig.stats()["outstanding"]))

    with rig:
        watcher = threading.Thread(target=watch, name="conformance-watcher", daemon=True)
        watcher.start()
        senders = [
            threading.Thread(target=sender, args=(n,), name=f"conformance-s{n}") for n in range(threads_n)
        ]
        for t in senders:
            t.start()
        for t in senders:
            t.join(120)
        assert not any(t.is_alive() for t in senders), "senders still blocked after 120 s"
        total = threads_n * per_thread * size
        wait_until(lambda: rig.stats()["delivered"] == total, 120, "every line delivered")
        done.set()
        watcher.join(5)
        stats = rig.stats()
        rig.assert_acknowledged_once()
    assert len(acked) == threads_n * per_thread and set(acked.values()) == {1}, "a chunk finished twice"
    assert 0 < peak[0] <= int(queue * emergency), (
        f"the sink held {peak[0]} records (room {queue * emergency:g})"
    )
    received = harness.received(total)
    sent = {origin(f"s{n}").source_id: lines_of(f"s{n}", per_thread * size) for n in range(threads_n)}
    assert_once(received, [m for lines in sent.values() for m in lines])
    assert_order(harness, received, sent)
    assert stats["produced"] == stats["delivered"] == total and stats["outstanding"] == 0, stats
    assert rig.sent("success") == total


# -- kill -9 of the agent --------------------------------------------------------------------------

KILL_LINES = 20_000
KILL_RATE = 4000
KILL_SINK_QUEUE = 2000
KILL_DISPATCHER_QUEUE = 2000
KILL_FLUSH = 0.1


def agent_settings(tmp: Path, harness: SinkHarness) -> dict[str, Any]:
    """An agent with a file source and only the sink under test."""
    return {
        "app": {"log_format": "json", "log_level": "info"},
        "server": {"host": "127.0.0.1", "port": free_port()},
        "metrics": {"host": "127.0.0.1", "port": free_port()},
        "files_config": {
            "watch_directories": [str(tmp / "logs")],
            "rescan_interval": "500ms",
            "poll_interval": "50ms",
        },
        "dispatcher": {
            "dlq_config": {"directory": str(tmp / "dlq")},
            "queue_size": KILL_DISPATCHER_QUEUE,
            "batch_size": 500,
            "drain_timeout": "30s",
        },
        "positions": {"directory": str(tmp / "positions"), "flush_interval": f"{int(KILL_FLUSH * 1000)}ms"},
        "sinks": {harness.section: harness.config({"queue_size": KILL_SINK_QUEUE})},
    }


def lines_read_at_least(agent: AgentProcess, n: int) -> bool:
    return int(agent.get("/stats")["files"]["lines_read"]) >= n


def test_kill_9_and_restart_loses_nothing_and_duplicates_only_the_unacknowledged_window(
    harness: SinkHarness, tmp_path: Path
) -> None:
    (tmp_path / "logs").mkdir()
    path = write_config(tmp_path / "config.yaml", agent_settings(tmp_path, harness))
    writer = generate(tmp_path / "logs" / "app.log", KILL_RATE, count=KILL_LINES)
    agent = AgentProcess(path, tmp_path / "agent.log").start()
    kills = 0
    try:
        for _ in range(2):
            wait_until(partial(lines_read_at_least, agent, 3000), 60, "lines flowing")
            agent.kill()
            kills += 1
            agent = AgentProcess(path, tmp_path / "agent.log").start()
        assert writer.wait(120) == 0
        received = harness.received(KILL_LINES, timeout=120)
        wait_until(
            lambda: agent.get("/stats")["files"]["in_flight_lines"] == 0, 60, "the last acknowledgements"
        )
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    finally:
        writer.kill()
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
    counts = Counter(int(orjson.loads(r.message)["seq"]) for r in received)
    missing = sorted(set(range(KILL_LINES)) - set(counts))
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    # What one kill can send again: lines delivered but not in the saved positions yet, at most the
    # sink's queue, the dispatcher's, one read buffer of lines, and what was acknowledged since the
    # last flush of the positions.
    window = KILL_SINK_QUEUE + KILL_DISPATCHER_QUEUE + (1 << 20) // 150 + int(KILL_RATE * KILL_FLUSH * 4)
    print(
        orjson.dumps(
            {"kills": kills, "received": len(received), "duplicates": duplicates, "window": window}
        ).decode()
    )
    assert not missing, f"{len(missing)} lines lost, e.g. seq {missing[:5]}"
    assert duplicates <= kills * window, f"{duplicates} duplicates > {kills} x {window}"
    assert not list((tmp_path / "dlq").glob("dlq_entry_*.json")), "nothing should have been parked"
