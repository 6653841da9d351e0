"""What Kafka's errors mean, and the delivery reports turned into the engine's outcomes.

Every error a delivery report can carry has one of three dispositions (:func:`classify`):

- *permanent*: the broker will never accept this record as it is; it goes to
  the DLQ topic, or the local store, with the reason ``send_error``;
- *timeout*: not delivered within ``sinks.kafka.timeout``; parked in the local
  store (reason ``timeout``) when the sink parks what times out
  (``dlq_config.enabled`` and ``send_on_timeout``), else re-sent at once;
- *retry*: everything else, fatal producer errors included (the record is fine;
  the producer is replaced): produced again after a back-off.

:func:`failure_of` maps them onto the engine's :class:`~log_capturer.engine.contract.Failure`
(a permanent size error becomes "retry alone": the broker refuses a whole batch that is too
large, small records included). :class:`Reports` holds the callbacks librdkafka calls from the
poll thread (confluent-kafka's per record, the chunk producer's per settled chunk) and reports
each record's outcome to the engine. See docs/reliability.md, "Errors: retriable or permanent".
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError, Message

from log_capturer.engine.contract import Failure, Headers, Record

if TYPE_CHECKING:
    from log_capturer.engine.runner import Attempt, Delivery, SinkRunner
    from log_capturer.reliability.dlq.replay import ReplayRecord
    from log_capturer.sinks.kafka.native import Settled


class Disposition(Enum):
    RETRY = "retry"
    TIMEOUT = "timeout"
    PERMANENT = "permanent"


_PERMANENT: frozenset[int] = frozenset(
    code
    for code in (
        getattr(KafkaError, name, None)
        for name in (
            "MSG_SIZE_TOO_LARGE",
            "_MSG_SIZE_TOO_LARGE",
            "INVALID_MSG",
            "CORRUPT_MESSAGE",
            "INVALID_MSG_SIZE",
            "INVALID_RECORD",
            "TOPIC_AUTHORIZATION_FAILED",
            "CLUSTER_AUTHORIZATION_FAILED",
            "TOPIC_EXCEPTION",
            "INVALID_REQUIRED_ACKS",
            "UNSUPPORTED_VERSION",
            "UNSUPPORTED_FOR_MESSAGE_FORMAT",
            "_INVALID_ARG",
            "_BAD_MSG",
            "_UNKNOWN_PARTITION",
        )
    )
    if code is not None
)

#: Errors that may come from the size of a whole batch rather than of the record itself.
SIZE_ERRORS: frozenset[int] = frozenset(
    c
    for c in (getattr(KafkaError, n, None) for n in ("MSG_SIZE_TOO_LARGE", "_MSG_SIZE_TOO_LARGE"))
    if c is not None
)

_TIMEOUT: frozenset[int] = frozenset({KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT})


def classify(err: KafkaError) -> Disposition:
    code = err.code()
    if code in _TIMEOUT:
        return Disposition.TIMEOUT
    if code in _PERMANENT:
        return Disposition.PERMANENT
    # A fatal error too: the producer is unusable, the record itself is fine (a new producer
    # sends it again).
    return Disposition.RETRY


def error_type(err: KafkaError) -> str:
    """Stable metric label for an error: the librdkafka error name in lower case."""
    name: str = err.name() or "unknown"
    return name.lstrip("_").lower()


def failure_of(err: KafkaError) -> tuple[Failure, str, str]:
    """What a delivery error means for the engine, its metric label, and its text."""
    etype = error_type(err)
    text = f"{etype}: {err.str()}"
    disposition = classify(err)
    if disposition is Disposition.TIMEOUT:
        return Failure.TIMEOUT, etype, text
    if disposition is Disposition.PERMANENT:
        # The broker refuses a whole batch when it is too large, small records included.
        return (Failure.RETRY_ALONE if err.code() in SIZE_ERRORS else Failure.REJECT), etype, text
    return Failure.RETRY, etype, text


def explain(err: KafkaError) -> str:
    """librdkafka's message, with the config keys to check for the common connection failures."""
    text: str = err.str()
    code = err.code()
    if code == KafkaError._AUTHENTICATION:
        return f"{text} (check sinks.kafka.auth: mechanism, username, password)"
    if code == KafkaError._SSL or "SSL" in text:
        return f"{text} (check sinks.kafka.tls: ca_file, cert_file/key_file, verify_certificate)"
    return text


def record_of(msg: Message) -> Record:
    """The record a confluent-kafka delivery report is about (-1: no partition was chosen)."""
    part = msg.partition()
    h = msg.headers()
    headers: Headers | None = None if h is None else (list(h.items()) if isinstance(h, dict) else list(h))
    return Record(
        msg.topic() or "",
        msg.value() or b"",
        msg.key(),
        part if part is not None and part >= 0 else -1,
        headers,
    )


class Reports:
    """The delivery reports of the sink's producers, as outcomes for the engine's runner.

    librdkafka calls them in the poll thread (from ``poll()``/``flush()``). A delivered record
    also says that a broker answers: :attr:`all_down` is cleared, which the error and
    statistics callbacks set when librdkafka finds every broker down.
    """

    def __init__(self, dlq_topic: str) -> None:
        #: Where :meth:`dead_letter` records were sent (for the engine's messages).
        self.dlq_topic = dlq_topic
        #: librdkafka said every broker is down, and no record was delivered since.
        self.all_down = False
        self._runner: SinkRunner | None = None

    def bind(self, runner: SinkRunner) -> None:
        self._runner = runner

    @property
    def runner(self) -> SinkRunner:
        runner = self._runner
        assert runner is not None, "bind() first"
        return runner

    def delivery(self, delivery: Delivery, err: KafkaError | None, msg: Message) -> None:
        """One record of a chunk (confluent-kafka's producer)."""
        if err is None:
            self.all_down = False
            delivery.delivered(1)
        else:
            self.runner.failed(delivery, record_of(msg), *failure_of(err), 0)

    def settled(self, settled: list[Settled]) -> None:
        """Chunks whose records all have their delivery report (the chunk producer): count the
        delivered ones, and report each failed one as a confluent-kafka report would be."""
        runner = self.runner
        for delivery, produced, failures in settled:
            d: Delivery = delivery
            for code, topic, value, key, partition, headers in failures:
                runner.failed(
                    d, Record(topic, value, key, partition, headers), *failure_of(KafkaError(code)), 0
                )
            ok = produced - len(failures)
            if ok:
                self.all_down = False
                d.delivered(ok)

    def attempt(self, attempt: Attempt, err: KafkaError | None, _msg: Message) -> None:
        """A record sent again (a retry, or alone)."""
        if err is None:
            self.runner.attempt_done(attempt, None)
        else:
            self.runner.attempt_done(attempt, *failure_of(err))

    def dead_letter(self, attempt: Attempt, err: KafkaError | None, _msg: Message) -> None:
        """A record sent to the DLQ topic; failed too, the engine parks it in the local store."""
        where = f"topic {self.dlq_topic}"
        self.runner.dead_letter_done(
            attempt, None if err is None else f"{error_type(err)}: {err.str()}", where
        )

    def replayed(self, rec: ReplayRecord, err: KafkaError | None) -> None:
        """A record replayed from the local store."""
        if err is None:
            self.runner.replayed(rec.topic, None, "", "")
        else:
            self.runner.replayed(rec.topic, *failure_of(err))
