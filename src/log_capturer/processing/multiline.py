"""Multiline joining: stack traces and other records spread over several lines.

A line *continues* the current record when it matches ``continuation_pattern``
(and not ``start_pattern``); with only ``start_pattern``, every line that does
not match it continues the record. Lines of a record are joined with ``\\n``.

A record is emitted when the next record starts, when ``timeout`` passed
without a new line, or when it reaches ``max_lines`` or ``max_bytes`` (then the
next line starts a new record: nothing is dropped). Blank lines are never fed
(the sources skip them), so they do not appear inside joined records. Lines of
different streams (stdout/stderr) are never joined.

Presets:

- ``java``: frames (``\\tat ...``, ``\\t... 12 more``), ``Caused by:`` and
  ``Suppressed:`` sections, any indented line, and a qualified exception
  header (``java.lang.IllegalStateException: boom``) continue the line before
  them, so the log line and its whole trace make one record.
- ``python``: ``Traceback (most recent call last):``, indented lines, the
  chained-exception notes and the final ``SomeError: message`` line continue
  the line before them (the log line of ``logger.exception``).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from itertools import compress
from typing import Any, cast

from log_capturer.processing.assembly import Lines

try:
    from log_capturer import _speedups
except ImportError:  # pragma: no cover - an install without a C compiler
    _speedups = cast(Any, None)

JAVA_CONTINUATION = (
    r"^\s+\S"  # tab-indented frames: "\tat com.x.Y(Y.java:1)", "\t... 3 more", "  Suppressed: ..."
    r"|^Caused by: "
    r"|^(?:[a-zA-Z_$][\w$]*\.)+[a-zA-Z_$][\w$]*(?:Exception|Error|Throwable)(?::\s.*)?$"
)
PYTHON_CONTINUATION = (
    r"^Traceback \(most recent call last\):"
    r"|^\s+\S"
    r"|^During handling of the above exception, another exception occurred:"
    r"|^The above exception was the direct cause of the following exception:"
    r"|^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Warning|Exit|Interrupt|Iteration|Group)"
    r"(?::\s.*|:)?$"
)
PRESETS: dict[str, tuple[str | None, str | None]] = {
    "java": (None, JAVA_CONTINUATION),
    "python": (None, PYTHON_CONTINUATION),
}


def _heads(chars: str) -> bytes:
    """A table of ASCII first characters (for ``_speedups.line_heads``): 1 for those in ``chars``."""
    return bytes(1 if chr(c) in chars else 0 for c in range(128))


_SPACE = "".join(chr(c) for c in range(128) if chr(c).isspace())  # what \s matches in ASCII
_NAME = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
#: The ASCII characters a preset's continuation line can start with: whitespace (indented lines)
#: and the first letters of its other alternatives (``Caused by:``, a qualified exception name,
#: ``Traceback``...). A line starting with any other ASCII character (a digit, ``{``...) never
#: continues, so the pattern is not even run on it.
PRESET_HEADS: dict[str, bytes] = {
    "java": _heads(_SPACE + _NAME + "$"),
    "python": _heads(_SPACE + _NAME),
}


@dataclass(frozen=True)
class MultilineRule:
    start: re.Pattern[str] | None
    continuation: re.Pattern[str] | None
    timeout: float
    max_lines: int
    max_bytes: int
    #: First characters a continuation line can have (``PRESET_HEADS``): set for a preset whose
    #: patterns are not replaced, None otherwise.
    heads: bytes | None = None

    @classmethod
    def build(
        cls,
        preset: str | None,
        start_pattern: str,
        continuation_pattern: str,
        timeout: float,
        max_lines: int,
        max_bytes: int,
    ) -> MultilineRule:
        start, cont = PRESETS[preset] if preset else (None, None)
        start = start_pattern or start
        cont = continuation_pattern or cont
        if start is None and cont is None:
            raise ValueError("a multiline rule needs a preset, a start_pattern or a continuation_pattern")
        return cls(
            re.compile(start) if start else None,
            re.compile(cont) if cont else None,
            timeout,
            max_lines,
            max_bytes,
            PRESET_HEADS[preset] if preset and not start_pattern and not continuation_pattern else None,
        )

    def continues(self, line: str) -> bool:
        if self.start is not None and self.start.match(line):
            return False
        if self.continuation is not None:
            return self.continuation.match(line) is not None
        return True


class MultilineJoiner:
    """Assembler that joins continuation lines onto the record they belong to."""

    def __init__(self, rule: MultilineRule) -> None:
        self.rule = rule
        self._group: list[str] = []
        self._group_raw = 0
        self._group_bytes = 0
        self._group_stream = ""
        self._group_truncated = False
        self._last_feed = 0.0
        self._with_streams = False

    @property
    def held(self) -> int:
        return self._group_raw

    def due(self, now: float) -> bool:
        return bool(self._group) and now - self._last_feed >= self.rule.timeout

    def _emit(self, out: Lines) -> None:
        if not self._group:
            return
        if self._group_truncated:
            out.truncated.add(len(out.text))
        out.text.append("\n".join(self._group))
        if out.raw is not None:
            out.raw.append(self._group_raw)
        if out.streams is not None:
            out.streams.append(self._group_stream)
        self._group = []
        self._group_raw = 0
        self._group_bytes = 0
        self._group_truncated = False

    def feed(self, batch: Lines, now: float) -> Lines:
        if batch.streams is None and batch.text:
            return self._feed_columns(batch, now)
        return self._feed_lines(batch, now)

    def _continuing(self, text: list[str]) -> list[int]:
        """Indexes of the lines that continue a record (``rule.continues``), the patterns run by
        ``map`` (no Python step per line)."""
        rule = self.rule
        n = len(text)
        if rule.continuation is not None:
            if rule.heads is not None and _speedups is not None:
                maybe = _speedups.line_heads(text, rule.heads)
                found = list(compress(maybe, map(rule.continuation.match, map(text.__getitem__, maybe))))
            else:
                found = list(compress(range(n), map(rule.continuation.match, text)))
            if rule.start is not None:
                starts = rule.start.match
                found = [i for i in found if starts(text[i]) is None]
            return found
        assert rule.start is not None  # MultilineRule.build requires one of them
        return list(compress(range(n), map(operator.not_, map(rule.start.match, text))))

    def _feed_columns(self, batch: Lines, now: float) -> Lines:
        """``_feed_lines`` for a batch without streams, a run of lines at a time: the lines that
        start a record between two continuation lines are copied as a slice."""
        rule = self.rule
        text = batch.text
        n = len(text)
        raw = batch.raw
        trunc = batch.truncated
        self._with_streams = False
        out = Lines([], [], set(), None)
        out_raw = cast("list[int]", out.raw)
        pos = 0
        for i in [*self._continuing(text), n]:
            if i > pos:
                # Lines pos .. i-1 each start a record: the held one ends, pos .. i-2 are records
                # of one line, i-1 is held (the lines after it may continue it).
                self._emit(out)
                last = i - 1
                if last > pos:
                    base = len(out.text) - pos
                    out.text += text[pos:last]
                    out_raw += raw[pos:last] if raw is not None else [1] * (last - pos)
                    if trunc:
                        out.truncated.update(base + t for t in trunc if pos <= t < last)
                line = text[last]
                self._group = [line]
                self._group_stream = ""
                self._group_raw = raw[last] if raw is not None else 1
                self._group_bytes = len(line) + 1
                self._group_truncated = last in trunc
            if i < n:
                line = text[i]
                group = self._group
                if (
                    group
                    and self._group_stream == ""
                    and len(group) < rule.max_lines
                    and self._group_bytes + len(line) < rule.max_bytes
                ):
                    group.append(line)
                else:
                    self._emit(out)
                    self._group = [line]
                    self._group_stream = ""
                self._group_raw += raw[i] if raw is not None else 1
                self._group_bytes += len(line) + 1
                if i in trunc:
                    self._group_truncated = True
            pos = i + 1
        self._last_feed = now
        return out

    def _feed_lines(self, batch: Lines, now: float) -> Lines:
        rule = self.rule
        continues = rule.continues
        streams = batch.streams
        self._with_streams = streams is not None
        out = Lines([], [], set(), [] if streams is not None else None)
        raw = batch.raw
        trunc = batch.truncated
        for i, line in enumerate(batch.text):
            stream = streams[i] if streams is not None else ""
            group = self._group
            if (
                group
                and stream == self._group_stream
                and len(group) < rule.max_lines
                and self._group_bytes + len(line) < rule.max_bytes
                and continues(line)
            ):
                group.append(line)
            else:
                self._emit(out)
                self._group = [line]
                self._group_stream = stream
            self._group_raw += raw[i] if raw is not None else 1
            self._group_bytes += len(line) + 1
            if i in trunc:
                self._group_truncated = True
        if batch.text:
            self._last_feed = now
        return out

    def flush(self) -> Lines:
        out = Lines([], [], set(), [] if self._with_streams else None)
        self._emit(out)
        return out
