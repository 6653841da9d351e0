"""One tailed file: reads whole lines from an open descriptor, a buffer at a time.

Positions are byte offsets. ``read_offset`` is the next byte to read;
``partial`` holds the bytes of an unfinished last line. A chunk covers
``[start, end)`` where ``end`` is just after its last newline, so a
checkpoint always lands on a line boundary.

Encoding policy: lines are decoded as UTF-8; invalid bytes are kept as
``\\xNN`` escapes (``backslashreplace``), so nothing is lost and the record is
valid JSON. A trailing ``\\r`` is removed; empty lines are skipped.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Chunk, Origin


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """``data[:limit]`` without splitting a UTF-8 sequence at the end."""
    cut = limit
    while cut > 0 and cut > limit - 4 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut] if cut > limit - 4 else data[:limit]


@dataclass(eq=False)
class TailedFile:
    path: str
    fd: int
    device: int
    inode: int
    origin: Origin
    checkpoint: Checkpoint
    read_offset: int = 0
    partial: bytes = b""
    #: Inside an over-long line: discard bytes up to the next newline.
    skipping: bool = False
    #: The path now names another file (or none): read to the end, then release.
    rotated: bool = False
    #: Lines acknowledged in earlier runs (from the positions file).
    saved_log_count: int = 0
    bytes_read: int = 0
    last_read: float = field(default_factory=time.time)
    size: int = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def position_entry(self) -> dict[str, object]:
        return {
            "offset": self.checkpoint.committed,
            "size": self.size,
            "inode": self.inode,
            "device": self.device,
            "last_read": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_read)),
            "log_count": self.saved_log_count + self.checkpoint.acked_lines,
            "bytes_read": self.bytes_read,
        }

    def read_chunk(self, bufsize: int, max_line: int) -> tuple[Chunk | None, bool]:
        """Read once. Returns (chunk or None, whether any bytes were read)."""
        st = os.fstat(self.fd)
        self.size = st.st_size
        if st.st_size < self.read_offset:
            # Truncated in place (copytruncate): start over from the beginning.
            self.read_offset = 0
            self.partial = b""
            self.skipping = False
            self.checkpoint.reset(0)
        if st.st_size == self.read_offset:
            return None, False
        data = os.pread(self.fd, bufsize, self.read_offset)
        if not data:
            return None, False
        start = self.read_offset - len(self.partial)
        self.read_offset += len(data)
        self.bytes_read += len(data)
        self.last_read = time.time()
        buf = self.partial + data if self.partial else data
        truncated: list[int] = []
        if self.skipping:
            nl = buf.find(b"\n")
            if nl < 0:
                self.partial = b""
                # Still inside the long line: checkpoint past the discarded bytes.
                return Chunk(self.origin, [], start, self.read_offset), True
            self.skipping = False
            buf = buf[nl + 1 :]
            start += nl + 1
        last_nl = buf.rfind(b"\n")
        if last_nl < 0:
            if len(buf) > max_line:
                line = _cut_utf8(buf, max_line).decode("utf-8", "backslashreplace")
                self.partial = b""
                self.skipping = True
                chunk = Chunk(self.origin, [line], start, self.read_offset)
                chunk.truncated = frozenset((0,))
                return chunk, True
            self.partial = buf
            return None, True
        complete = buf[: last_nl + 1]
        self.partial = buf[last_nl + 1 :]
        end = start + last_nl + 1
        text = complete.decode("utf-8", "backslashreplace")
        parts = text.split("\n")
        parts.pop()
        if "\r" in text:
            parts = [p[:-1] if p.endswith("\r") else p for p in parts]
        if len(complete) > max_line:
            for i, p in enumerate(parts):
                if len(p) > max_line // 4 and len(raw := p.encode()) > max_line:
                    parts[i] = _cut_utf8(raw, max_line).decode("utf-8", "backslashreplace")
                    truncated.append(i)
        if "" in parts:
            kept = [i for i, p in enumerate(parts) if p]
            lines = [parts[i] for i in kept]
            truncated = [kept.index(i) for i in truncated]
        else:
            lines = parts
        chunk = Chunk(self.origin, lines, start, end)
        if truncated:
            chunk.truncated = frozenset(truncated)
        return chunk, True
