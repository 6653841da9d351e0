"""Classification of Kafka delivery errors.

Every error a delivery report can carry has one of three dispositions:

- *permanent*: the broker will never accept this record as it is; it goes to
  the DLQ topic, or the local store, with the reason ``send_error``;
- *timeout*: not delivered within ``sinks.kafka.timeout``; parked in the local
  store (reason ``timeout``) when the sink parks what times out
  (``dlq_config.enabled`` and ``send_on_timeout``), else re-sent at once;
- *retry*: everything else, fatal producer errors included (the record is fine;
  the producer is replaced): produced again after a back-off.

See docs/reliability.md, "Errors: retriable or permanent".
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
    # A fatal error too: the producer is unusable, the record itself is fine (a new producer
    # sends it again).
    return Disposition.RETRY


def error_type(err: KafkaError) -> str:
    """Stable metric label for an error: the librdkafka error name in lower case."""
    name: str = err.name() or "unknown"
    return name.lstrip("_").lower()
