"""What Loki's answers say and what the sink does with each (Retry-After, 401, a split 400, Loki's
timestamp errors, which VictoriaLogs never sends), on the real engine, not started."""

from __future__ import annotations

import collections
import email.utils
import time
from typing import Any

import orjson

from log_capturer.engine.runner import Delivery
from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk, Origin
from log_capturer.reliability.circuit_breaker import BreakerState
from log_capturer.sinks.loki.config import LokiSinkConfig
from log_capturer.sinks.loki.push import Entry
from log_capturer.sinks.loki.service import (
    MAX_RETRY_AFTER,
    TIMESTAMP_ERROR,
    LokiService,
    learned_max_age,
    retry_after,
)
from log_capturer.sinks.loki.sink import LokiSink, policy_of


def test_retry_after_seconds_or_a_date_capped() -> None:
    assert retry_after(None) == 0.0
    assert retry_after("3") == 3.0
    assert retry_after("garbage") == 0.0
    assert retry_after("100000") == MAX_RETRY_AFTER
    soon = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= retry_after(soon) <= 10


def test_the_age_limit_is_read_from_lokis_message() -> None:
    text = (
        "entry for stream '{job=\"x\"}' has timestamp too old: 2024-01-01T00:00:00Z, "
        "oldest acceptable timestamp is: 2024-05-01T00:00:00Z"
    )
    assert TIMESTAMP_ERROR.search(text)
    now = 1714608000.0  # 2024-05-02T00:00:00Z
    assert learned_max_age(text, now) == 86400.0
    assert learned_max_age("some other error", now) is None
    assert TIMESTAMP_ERROR.search("entry out of order")
    assert not TIMESTAMP_ERROR.search("cannot read Loki protobuf data: too big request")


# -- what each answer does, on the real engine (not started: no server is contacted) -------------
def sink_with(lines: list[str], **section: Any) -> tuple[LokiSink, list[Entry], Delivery]:
    cfg = LokiSinkConfig.model_validate({"enabled": True, **section})
    sink = LokiSink(cfg, Metrics(), None)
    sink.loki._runner = sink
    chunk = Chunk(Origin("file", "/a.log"), lines, start=0, end=len(lines))
    chunk.levels = ["info"] * len(lines)
    prepared = sink.loki.prepare(chunk)
    delivery = Delivery(sink, chunk, collections.Counter(prepared.counts))
    for e in prepared.entries:
        e.owner = delivery
    sink.loki._held = len(prepared.entries)
    return sink, prepared.entries, delivery


def test_entries_of_message_lines_hold_their_lines_and_make_records_when_parked() -> None:
    sink, entries, _ = sink_with(["a", "bb", "ccc"], line_format="message")
    assert all(e.lazy for e in entries)
    chunk = Chunk(Origin("file", "/a.log"), ["a", "bb", "ccc"], start=0, end=3)
    chunk.levels = ["info"] * 3
    prepared = sink.loki.prepare(chunk)
    assert prepared.nbytes == sum(e.size for e in prepared.entries)
    assert [orjson.loads(e.record.value)["message"] for e in prepared.entries] == ["a", "bb", "ccc"]
    # A record Loki refuses goes to the DLQ with its JSON record, as any other.
    sink.loki._outcome(entries[1:2], 400, "bad entry", None)
    (dead,) = sink._to_dead_letter
    assert orjson.loads(dead.record.value)["message"] == "bb"


def test_2xx_delivers_every_entry() -> None:
    sink, entries, delivery = sink_with(["a", "b", "c"])
    sink.loki._outcome(entries, 204, "", None)
    assert delivery.remaining == 1  # the sender's own count is all that is left
    assert sink.loki.queued() == 0 and sink.loki.pushed == 3


def test_429_is_retried_and_holds_pushes_for_retry_after() -> None:
    sink, entries, _ = sink_with(["a", "b"])
    sink.loki._outcome(entries, 429, "slow down", "2")
    assert 1.5 < sink.loki._hold_until - time.monotonic() <= 2.0
    assert len(sink._retries) == 2 and sink.loki.throttled == 1
    assert not sink.loki.failing  # throttled, not away


def test_503_and_no_answer_are_retried_and_mark_loki_away() -> None:
    sink, entries, _ = sink_with(["a"])
    sink.loki._outcome(entries, 0, "cannot reach loki: refused", None)
    assert len(sink._retries) == 1
    state = sink.loki.state()
    assert state.unreachable and "does not take pushes" in state.unreachable_as


def test_a_retry_failing_past_timeout_is_reported_timed_out() -> None:
    sink, entries, delivery = sink_with(["a"], timeout="1s")
    sink.loki.park_after = 1.0
    delivery.started -= 5
    sink.loki._outcome(entries, 500, "boom", None)
    # Without a local store a timed-out record is sent again at once, not after a back-off.
    assert len(sink._retries) == 1 and sink._retries[0].due <= time.monotonic() and not sink._parking
    sink2, entries2, delivery2 = sink_with(["a"], timeout="1s")
    sink2.policy.park_on_timeout = True
    sink2.loki.park_after = 1.0
    delivery2.started -= 5
    sink2.loki._outcome(entries2, 500, "boom", None)
    assert [a.park_reason for a in sink2._parking] == ["timeout"]


def test_401_opens_the_breaker_at_once_and_keeps_the_entries() -> None:
    sink, entries, _ = sink_with(["a", "b"])
    sink.loki._outcome(entries, 401, "no credentials", None)
    assert sink.breaker.state is BreakerState.OPEN
    assert len(sink._retries) == 2 and not sink._to_dead_letter
    assert "credentials" in sink.loki.state().unreachable_as


def test_400_splits_the_push_then_rejects_the_single_entry_with_lokis_message() -> None:
    sink, entries, _ = sink_with(["a", "b", "c"])
    sink.loki._outcome(entries, 400, "bad entry", None)
    assert [len(b) for b in sink.loki._split] == [1, 2] and sink.loki.splits == 1
    first = sink.loki._split.popleft()
    sink.loki._outcome(first, 400, "bad entry", None)
    (dead,) = sink._to_dead_letter
    assert dead.error == "Loki refused the entry (HTTP 400): bad entry"


TOO_OLD = (
    "entry for stream '{job=\"x\"}' has timestamp too old: 2024-01-01T00:00:00Z, "
    "oldest acceptable timestamp is: {oldest}"
)


def test_timestamp_too_old_is_parked_and_teaches_the_limit() -> None:
    sink, entries, _ = sink_with(["a"])
    oldest = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2 * 86400))
    sink.loki._outcome(entries, 400, TOO_OLD.replace("{oldest}", oldest), None)
    (dead,) = sink._to_dead_letter
    assert "timestamp too old" in dead.error
    assert abs(sink.loki.shaper.max_age_ns / 1e9 - 2 * 86400) < 5


def test_timestamp_refused_is_sent_again_stamped_now_with_rewrite_timestamp() -> None:
    sink, entries, _ = sink_with(["a"], out_of_order_action="rewrite_timestamp")
    before = entries[0].ts
    sink.loki._outcome(entries, 400, "entry out of order", None)
    (again,) = sink.loki._split
    assert again[0].rewritten and again[0].ts >= before and sink.loki.rewritten == 1
    # Refused again: parked this time, not rewritten for ever.
    sink.loki._split.clear()
    sink.loki._outcome(again, 400, "entry out of order", None)
    assert len(sink._to_dead_letter) == 1


def test_auth_and_custom_headers() -> None:
    cfg = LokiSinkConfig.model_validate(
        {"auth": {"type": "bearer", "token": "t0k"}, "headers": {"X-Team": "ops"}}
    )
    service = LokiService(cfg, None, "loki_sink", Metrics(), "loki")
    assert service._auth_headers() == {
        "Authorization": "Bearer t0k",
        "X-Team": "ops",
        "User-Agent": "log-capturer",
    }
    basic = LokiSinkConfig.model_validate({"auth": {"type": "basic", "username": "u", "password": "p"}})
    headers = LokiService(basic, None, "loki_sink", Metrics(), "loki")._auth_headers()
    assert headers["Authorization"] == "Basic dTpw"


def test_dlq_config_shapes_the_engines_policy() -> None:
    cfg = LokiSinkConfig.model_validate({"dlq_config": {"send_on_queue_full": False}})
    policy = policy_of(cfg, dlq=None)
    assert policy.backpressure.queue_emergency_threshold == 1.0 and not policy.backpressure.timeout_escalation
    assert not policy.park_on_timeout  # no local store: nothing can be parked
    default = policy_of(LokiSinkConfig(), dlq=None)
    assert default.backpressure.queue_emergency_threshold < 1.0


def test_batches_are_taken_in_order_up_to_the_count_and_the_byte_limit() -> None:
    sink, _entries, _delivery = sink_with([], batch_size=4, max_request_size=1024)
    loki = sink.loki
    first = [Entry(b"v", "d", i, b"x" * 100, "{}", "") for i in range(6)]  # 134 bytes each
    second = [Entry(b"v", "d", 10 + i, b"y" * 400, "{}", "t2" if i else "") for i in range(3)]  # 434
    big = [Entry(b"v", "d", 20, b"z" * 5000, "{}", "")]  # past max_request_size: leaves alone
    for part in (first, second, big):
        loki._hand(part)
    loki._in_flight = loki.config.max_in_flight  # the round takes the handed entries, pushes none
    loki._round(set())
    assert not loki._incoming and loki._pending_bytes == 6 * 134 + 3 * 434 + 5034
    taken = []
    while loki._pending:
        taken.append([e.ts for e in loki._take()])
    assert taken == [[0, 1, 2, 3], [4, 5, 10], [11, 12], [20]]
    assert loki._pending_bytes == 0
    assert LokiService._by_tenant(second) == {"": second[:1], "t2": second[1:]}
    assert LokiService._by_tenant(first) == {"": first}


def test_a_stopped_service_lets_go_of_the_entries_it_never_pushed() -> None:
    sink, entries, delivery = sink_with(["a", "b", "c"])
    service = sink.loki
    service._hand(entries)
    service._split.append(entries[:1])
    service.stop()
    assert not service._incoming and not service._pending and not service._split
    assert delivery.remaining == len(entries) + 1  # unacknowledged: read again after a restart
