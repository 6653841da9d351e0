"""The descriptor cache: at most ``max_open_files`` followed files hold an open descriptor.

The cache orders open files by their last read. Opening one more at the limit
first closes the least recently read *live* file (its path still leads to it,
so it is watched with ``stat`` and reopened by identity when it grows); a
rotated file is never closed this way, since its path no longer leads to it.
Idle live files are closed after ``close_inactive`` once everything in them was
read. ``max_open_files`` is lowered to half the process's descriptor limit
(``ulimit -n``) when it is above it, leaving room for sockets and the other
tailing source.

Only the tailer's read thread uses a cache; it is not thread-safe.
"""

from __future__ import annotations

import logging
import os
import resource
from collections import OrderedDict

from log_capturer.observability.metrics import Metrics
from log_capturer.sources.file.identity import Key
from log_capturer.sources.file.tail import TailedFile

log = logging.getLogger(__name__)


def descriptor_limit(configured: int) -> int:
    """``configured``, or half the process's soft descriptor limit when that is lower (at least 8)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and configured > soft // 2:
        used = max(8, soft // 2)
        log.warning(
            "max_open_files lowered to half the process descriptor limit",
            extra={"configured": configured, "used": used, "ulimit_n": soft},
        )
        return used
    return configured


class DescriptorCache:
    """The open descriptors of followed files, least recently read first."""

    def __init__(self, max_open_files: int, metrics: Metrics, component: str) -> None:
        self.limit = descriptor_limit(max_open_files)
        self.metrics = metrics
        #: The source's name, for ``errors_total{component, error_type="open_failed"}``.
        self.component = component
        self._open: OrderedDict[Key, TailedFile] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def open(self, path: str, keep: Key | None = None) -> int | None:
        """Open ``path`` read-only; at the limit, first close the least recently read live file
        other than ``keep``. None (counted as ``open_failed`` when the open failed) if it cannot."""
        if len(self._open) >= self.limit:
            victim = next((t for t in self._open.values() if t.live and t.key != keep), None)
            if victim is None:
                return None
            self.close(victim)
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            log.warning("cannot open %s: %s", path, exc.strerror)
            self.metrics.errors.labels(self.component, "open_failed").inc()
            return None

    def adopt(self, tf: TailedFile, fd: int, now: float) -> None:
        """``tf`` reads through ``fd`` (opened by :meth:`open`) from now on."""
        tf.fd = fd
        tf.last_active = now
        self._open[tf.key] = tf

    def add(self, tf: TailedFile) -> None:
        """Count ``tf``, whose descriptor is already open, as the most recently read."""
        self._open[tf.key] = tf

    def touch(self, tf: TailedFile) -> None:
        """``tf`` was just read: it is closed last."""
        if tf.key in self._open:
            self._open.move_to_end(tf.key)

    def close(self, tf: TailedFile) -> None:
        tf.close()
        self._open.pop(tf.key, None)

    def forget(self, key: Key) -> None:
        """Stop counting the descriptor known under ``key`` without closing it (its file changed key)."""
        self._open.pop(key, None)

    def close_inactive(self, now: float, after: float) -> None:
        """Close live files read to their end and not read for ``after`` seconds."""
        for tf in list(self._open.values()):
            if now - tf.last_active < after:
                break  # ordered by last read: the rest are more recent
            if tf.live and not tf.unread and not tf.partial:
                self.close(tf)

    def clear(self) -> None:
        self._open.clear()
