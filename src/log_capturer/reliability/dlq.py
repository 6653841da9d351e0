"""The local dead-letter store.

Entries are JSON objects with the fields users of the original agent know
(``entry_id``, ``timestamp``, ``original_entry``, ``error_message``,
``error_type``, ``failed_sink``, ``retry_count``, ``reprocess_attempts``,
``next_reprocess_time``), plus ``topic`` and ``key`` so they can be replayed
to where they were going. They are appended, one per line, to segment files
``dlq_entry_<UTC time>_<seq>.json`` in ``dispatcher.dlq_config.directory``;
``cat dlq_entry_*.json | jq .error_message`` works on them.

Durability: :meth:`DeadLetterStore.park` returns only after the entries are
written and ``fsync``ed (file, and the directory when a segment is created),
so a line acknowledged because it was parked survives a crash or power loss.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from log_capturer.config.schema import DispatcherDLQConfig

SEGMENT_PREFIX = "dlq_entry_"


class DLQWriteError(OSError):
    """The store could not durably write an entry (unwritable, full, or over its limits)."""


@dataclass
class DLQEntry:
    original_entry: dict[str, Any]
    error_message: str
    error_type: str
    failed_sink: str
    topic: str = ""
    key: str | None = None
    retry_count: int = 0

    def to_json(self, next_reprocess: float) -> bytes:
        now = datetime.now(UTC)
        return orjson.dumps(
            {
                "entry_id": uuid.uuid4().hex,
                "timestamp": now.isoformat().replace("+00:00", "Z"),
                "original_entry": self.original_entry,
                "error_message": self.error_message,
                "error_type": self.error_type,
                "failed_sink": self.failed_sink,
                "topic": self.topic,
                "key": self.key,
                "retry_count": self.retry_count,
                "reprocess_attempts": 0,
                "next_reprocess_time": datetime.fromtimestamp(next_reprocess, UTC)
                .isoformat()
                .replace("+00:00", "Z"),
            }
        )


class DeadLetterStore:
    def __init__(self, config: DispatcherDLQConfig) -> None:
        self.config = config
        self.directory = Path(config.directory)
        self._lock = threading.Lock()
        self._segment: Path | None = None
        self._seq = 0
        self.entries_written = 0

    def _new_segment(self) -> Path:
        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        return self.directory / f"{SEGMENT_PREFIX}{stamp}_{os.getpid()}_{self._seq:06d}.json"

    def park(self, entries: list[DLQEntry]) -> None:
        """Append ``entries`` durably; raises :class:`DLQWriteError` when that is impossible."""
        if not entries:
            return
        due = time.time() + self.config.reprocessing_config.initial_delay
        payload = b"".join(e.to_json(due) + b"\n" for e in entries)
        limit = self.config.max_size_mb * 1024 * 1024
        with self._lock:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                if (
                    self._segment is None
                    or not self._segment.exists()
                    or (self._segment.stat().st_size + len(payload) > limit // self.config.max_files)
                ):
                    self._segment = self._new_segment()
                created = not self._segment.exists()
                fd = os.open(self._segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, payload)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if created:
                    dfd = os.open(self.directory, os.O_RDONLY)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
            except OSError as exc:
                raise DLQWriteError(exc.errno, f"cannot write the DLQ in {self.directory}: {exc}") from exc
            self.entries_written += len(entries)
