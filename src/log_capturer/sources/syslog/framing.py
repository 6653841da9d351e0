"""Syslog over TCP framing (RFC 6587): octet counting and newline-terminated frames.

A frame that starts with a digit is octet-counted (``<length> <message>``);
one that starts with anything else ends at the next newline (a trailing
``\\r`` is dropped). Both kinds may follow each other on one connection.
Frames longer than the limit are cut to it and flagged; the rest of such a
frame is skipped.
"""

from __future__ import annotations

#: Digits of the longest length prefix accepted (up to 999,999,999 bytes).
MAX_LENGTH_DIGITS = 9


class Framer:
    """Splits a TCP byte stream into frames: ``feed`` returns ``(frame, truncated)`` pairs."""

    __slots__ = ("_buf", "_discard_line", "_skip", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        #: Bytes of an over-long octet-counted frame still to skip.
        self._skip = 0
        #: Inside an over-long newline frame: skip to the next newline.
        self._discard_line = False

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        buf = self._buf
        buf += data
        out: list[tuple[bytes, bool]] = []
        limit = self.max_bytes
        pos = 0
        end = len(buf)
        while pos < end:
            if self._skip:
                n = min(self._skip, end - pos)
                self._skip -= n
                pos += n
                continue
            if self._discard_line:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    pos = end
                    break
                pos = nl + 1
                self._discard_line = False
                continue
            first = buf[pos]
            if 0x30 <= first <= 0x39:
                sp = buf.find(b" ", pos, pos + MAX_LENGTH_DIGITS + 1)
                if sp < 0 and end - pos <= MAX_LENGTH_DIGITS:
                    break  # the length prefix is not complete yet
                if sp > 0 and buf[pos:sp].isdigit():
                    length = int(buf[pos:sp])
                    start = sp + 1
                    if length <= limit:
                        if end - start < length:
                            break
                        frame = bytes(buf[start : start + length])
                        if frame:
                            out.append((frame, False))
                        pos = start + length
                        continue
                    if end - start < limit:
                        break
                    out.append((bytes(buf[start : start + limit]), True))
                    self._skip = length - limit
                    pos = start + limit
                    continue
                # Digits not followed by a space: a newline-terminated frame after all.
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if end - pos > limit:
                    out.append((bytes(buf[pos : pos + limit]), True))
                    self._discard_line = True
                    pos = end
                break
            frame = bytes(buf[pos : nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl])
            if len(frame) > limit:
                out.append((frame[:limit], True))
            elif frame:
                out.append((frame, False))
            pos = nl + 1
        del buf[:pos]
        return out

    def finish(self) -> tuple[bytes, bool] | None:
        """At end of stream: the unterminated last frame, if any (flagged when it was incomplete)."""
        rest = bytes(self._buf).rstrip(b"\r\n")
        self._buf.clear()
        if self._skip or self._discard_line or not rest:
            return None
        first = rest[0]
        if 0x30 <= first <= 0x39:
            length, sp, body = rest.partition(b" ")
            if sp and length.isdigit():
                # An octet-counted frame cut short by the peer.
                return body[: self.max_bytes], True
        return rest[: self.max_bytes], len(rest) > self.max_bytes
