"""Keep repeated client errors from flooding the agent's log.

librdkafka reports a refused connection on every reconnect attempt (about 20 a
second while a broker is down). The first occurrence of a message is logged at
once; repeats within ``window`` seconds are counted and summed up in the next
line that gets through. Metrics still count every error.
"""

from __future__ import annotations

import logging
import threading
import time


class Repeats:
    """Decides whether a message should be logged now; thread-safe."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._seen: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def admit(self, text: str) -> int | None:
        """None to drop ``text`` now, else how many repeats were dropped since it was last logged."""
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(text)
            if seen is not None and now - seen[0] < self.window:
                last, dropped = seen
                self._seen[text] = (last, dropped + 1)
                return None
            if len(self._seen) > 1000:
                self._seen.clear()
            self._seen[text] = (now, 0)
            return seen[1] if seen is not None else 0


class RepeatFilter(logging.Filter):
    """A logging filter applying :class:`Repeats` to the librdkafka logger."""

    def __init__(self, window: float = 10.0) -> None:
        super().__init__()
        self.repeats = Repeats(window)

    def filter(self, record: logging.LogRecord) -> bool:
        dropped = self.repeats.admit(record.getMessage())
        if dropped is None:
            return False
        if dropped:
            record.msg = (
                f"{record.getMessage()} (and {dropped} times more in the last {self.repeats.window:g}s)"
            )
            record.args = ()
        return True


def quiet_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with one :class:`RepeatFilter` attached."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())
    return logger
