"""What Kafka's errors mean, and delivery reports turned into the engine's outcomes: no broker;
the reports are the objects librdkafka hands to the callbacks (``KafkaError``, ``Message``)."""

from __future__ import annotations

from typing import Any, cast

from confluent_kafka import KafkaError, Message

from log_capturer.engine.contract import Failure, Record
from log_capturer.engine.runner import SinkRunner
from log_capturer.sinks.kafka.delivery import (
    Disposition,
    Reports,
    classify,
    error_type,
    explain,
    failure_of,
    record_of,
)


def test_classification() -> None:
    assert classify(KafkaError(KafkaError._MSG_TIMED_OUT)) is Disposition.TIMEOUT
    assert classify(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)) is Disposition.PERMANENT
    assert classify(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)) is Disposition.PERMANENT
    assert classify(KafkaError(KafkaError.NOT_ENOUGH_REPLICAS)) is Disposition.RETRY
    assert classify(KafkaError(KafkaError._TRANSPORT)) is Disposition.RETRY
    assert classify(KafkaError(KafkaError._PURGE_QUEUE)) is Disposition.RETRY
    assert error_type(KafkaError(KafkaError._MSG_TIMED_OUT)) == "msg_timed_out"


def test_every_librdkafka_error_code_has_a_disposition() -> None:
    codes = {
        v for k, v in vars(KafkaError).items() if k.isupper() or (k.startswith("_") and isinstance(v, int))
    }
    codes = {c for c in codes if isinstance(c, int)}
    assert len(codes) > 100
    permanent = {c for c in codes if classify(KafkaError(c)) is Disposition.PERMANENT}
    timeouts = {c for c in codes if classify(KafkaError(c)) is Disposition.TIMEOUT}
    # What docs/reliability.md lists: record-level rejections and authorization; everything else is
    # retried (a record is never dropped for an error this table does not know).
    assert {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError._UNKNOWN_PARTITION,
    } <= permanent
    assert {KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT} == timeouts
    for retriable in (
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._QUEUE_FULL,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._PURGE_INFLIGHT,
    ):
        assert classify(KafkaError(retriable)) is Disposition.RETRY, retriable


def test_failure_of_maps_each_disposition_to_the_engines_outcome() -> None:
    timed_out = failure_of(KafkaError(KafkaError._MSG_TIMED_OUT, "Local: Message timed out"))
    assert timed_out == (Failure.TIMEOUT, "msg_timed_out", "msg_timed_out: Local: Message timed out")
    # Too large may be the batch's size, not the record's: sent alone before it counts as refused.
    assert failure_of(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))[:2] == (
        Failure.RETRY_ALONE,
        "msg_size_too_large",
    )
    assert failure_of(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))[:2] == (
        Failure.REJECT,
        "topic_authorization_failed",
    )
    assert failure_of(KafkaError(KafkaError._PURGE_QUEUE))[0] is Failure.RETRY
    fatal = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
    assert failure_of(fatal)[0] is Failure.RETRY  # the record is fine; the producer is replaced


def test_explain_names_the_config_keys_to_check() -> None:
    auth = explain(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error"))
    assert auth.startswith("SASL authentication error") and "sinks.kafka.auth" in auth
    assert "sinks.kafka.tls" in explain(KafkaError(KafkaError._SSL, "handshake failed"))
    assert "sinks.kafka.tls" in explain(KafkaError(KafkaError._TRANSPORT, "SSL handshake failed"))
    assert explain(KafkaError(KafkaError._TRANSPORT, "Connection refused")) == "Connection refused"


def test_record_of_a_report() -> None:
    msg = Message(topic="logs", value=b"{}", key=b"k", partition=2, headers=[("level", b"info")])
    assert record_of(msg) == Record("logs", b"{}", b"k", 2, [("level", b"info")])
    # No partition chosen yet (refused before a partition was assigned): librdkafka's partitioner.
    unassigned = Message(topic="logs", value=b"{}", partition=-1)
    assert record_of(unassigned) == Record("logs", b"{}", None, -1, None)
    assert record_of(Message(topic="logs", value=b"{}")).partition == -1


class Chunk:
    """What a :class:`~log_capturer.engine.runner.Delivery` is to the reports: a countdown."""

    def __init__(self) -> None:
        self.delivered_count = 0

    def delivered(self, n: int = 1) -> None:
        self.delivered_count += n


class Engine:
    """The outcomes the reports give the engine's runner, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def failed(
        self, d: Any, record: Record, failure: Failure, etype: str, text: str, attempt: int = 0
    ) -> None:
        self.calls.append(("failed", d, record, failure, etype, attempt))

    def attempt_done(self, a: Any, failure: Failure | None, etype: str = "", text: str = "") -> None:
        self.calls.append(("attempt", a, failure, etype))

    def dead_letter_done(self, a: Any, error: str | None, where: str) -> None:
        self.calls.append(("dead_letter", a, error, where))

    def replayed(self, topic: str, failure: Failure | None, etype: str, text: str) -> None:
        self.calls.append(("replayed", topic, failure, etype))


def reports(dlq_topic: str = "logs-dlq") -> tuple[Reports, Engine]:
    engine = Engine()
    r = Reports(dlq_topic)
    r.bind(cast(SinkRunner, engine))
    return r, engine


def test_a_delivered_record_counts_and_says_a_broker_answers() -> None:
    r, engine = reports()
    d = Chunk()
    r.all_down = True
    r.delivery(cast(Any, d), None, Message(topic="logs", value=b"a"))
    assert d.delivered_count == 1 and not r.all_down and engine.calls == []


def test_a_failed_record_goes_to_the_engine_with_its_record_and_outcome() -> None:
    r, engine = reports()
    d = Chunk()
    r.all_down = True
    err = KafkaError(KafkaError.INVALID_RECORD, "bad")
    r.delivery(cast(Any, d), err, Message(topic="logs", value=b"a", key=b"k", partition=1))
    assert engine.calls == [("failed", d, Record("logs", b"a", b"k", 1), Failure.REJECT, "invalid_record", 0)]
    assert d.delivered_count == 0 and r.all_down


def test_a_settled_chunk_counts_its_delivered_records_and_reports_each_failure() -> None:
    r, engine = reports()
    whole, partly, none = Chunk(), Chunk(), Chunk()
    r.all_down = True
    hdrs: list[tuple[str, str | bytes | None]] = [("level", b"error"), ("source_id", b"/var/log/a.log")]
    failures: list[Any] = [
        (KafkaError._MSG_TIMED_OUT, "logs", b"x", "key", -1, None),
        (KafkaError.MSG_SIZE_TOO_LARGE, "logs-high", b"y", None, 3, hdrs),
    ]
    r.settled([(whole, 4, []), (partly, 5, failures), (none, 1, failures[:1])])
    assert (whole.delivered_count, partly.delivered_count, none.delivered_count) == (4, 3, 0)
    big = Record("logs-high", b"y", None, 3, hdrs)
    assert engine.calls == [
        ("failed", partly, Record("logs", b"x", "key", -1), Failure.TIMEOUT, "msg_timed_out", 0),
        ("failed", partly, big, Failure.RETRY_ALONE, "msg_size_too_large", 0),
        ("failed", none, Record("logs", b"x", "key", -1), Failure.TIMEOUT, "msg_timed_out", 0),
    ]
    assert engine.calls[1][2].headers is hdrs, "the failed record keeps the headers it was sent with"
    assert not r.all_down


def test_attempts_dead_letters_and_replays_report_their_outcome() -> None:
    r, engine = reports("logs-dlq")
    attempt = object()
    msg = Message(topic="logs", value=b"a")
    r.attempt(cast(Any, attempt), None, msg)
    r.attempt(cast(Any, attempt), KafkaError(KafkaError.NOT_ENOUGH_REPLICAS), msg)
    r.dead_letter(cast(Any, attempt), None, msg)
    r.dead_letter(cast(Any, attempt), KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"), msg)

    class Replayed:
        topic = "logs"

    r.replayed(cast(Any, Replayed()), None)
    r.replayed(cast(Any, Replayed()), KafkaError(KafkaError._MSG_TIMED_OUT))
    assert engine.calls == [
        ("attempt", attempt, None, ""),
        ("attempt", attempt, Failure.RETRY, "not_enough_replicas"),
        ("dead_letter", attempt, None, "topic logs-dlq"),
        ("dead_letter", attempt, "topic_authorization_failed: denied", "topic logs-dlq"),
        ("replayed", "logs", None, ""),
        ("replayed", "logs", Failure.TIMEOUT, "msg_timed_out"),
    ]
