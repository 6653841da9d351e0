"""Classification of Kafka delivery errors.

Every error a delivery report can carry is either *retriable* (produce the
record again, after a delay) or *permanent* (the broker will never accept this
record as it is: park it in the dead-letter queue with the reason). A record
that timed out in the client queue is retriable: it is re-sent, not dropped.
"""

from __future__ import annotations

from enum import Enum

from confluent_kafka import KafkaError


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
    if err.fatal():
        # The producer instance is unusable; the record itself is fine: retry on a new producer.
        return Disposition.RETRY
    return Disposition.RETRY


def error_type(err: KafkaError) -> str:
    """Stable metric label for an error: the librdkafka error name in lower case."""
    name: str = err.name() or "unknown"
    return name.lstrip("_").lower()


def dlq_reason(disposition: Disposition) -> str:
    return "timeout" if disposition is Disposition.TIMEOUT else "send_error"
