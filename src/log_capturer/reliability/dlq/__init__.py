"""The dead-letter queue: a durable local store, replay, and automatic reprocessing."""

from log_capturer.reliability.dlq.store import (
    SEGMENT_PREFIX,
    DeadLetterStore,
    DLQEntry,
    DLQFullError,
    DLQWriteError,
)

__all__ = ["SEGMENT_PREFIX", "DLQEntry", "DLQFullError", "DLQWriteError", "DeadLetterStore"]
