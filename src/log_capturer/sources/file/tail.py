"""One followed file: reads whole lines from a descriptor, a buffer at a time.

Positions are byte offsets. ``read_offset`` is the next byte to read;
``partial`` holds the bytes of an unfinished last line. A chunk covers
``[start, end)`` where ``end`` is just after its last complete record, so a
checkpoint always lands on a line boundary. With an assembler (multiline,
container log formats), the lines it still holds are not covered: ``end`` is
the start of the first held line until the assembler emits them.

Encoding policy: lines are decoded as UTF-8. Invalid bytes are kept as
``\\xNN`` escapes by default (``backslashreplace``: nothing is lost and the
record is valid JSON) or replaced by U+FFFD (``replace``), per
``encoding_errors``. A trailing ``\\r`` is removed; empty lines are skipped.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, cast

from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.processing.assembly import Assembler, Lines
from log_capturer.record import Chunk, Origin
from log_capturer.sources.file.identity import Fingerprint

try:
    from log_capturer import _speedups
except ImportError:  # pragma: no cover - an install without a C compiler
    _speedups = cast(Any, None)

#: Shared per-stream field dicts for container records (never mutated).
STREAM_FIELDS: dict[str, dict[str, Any]] = {
    "stdout": {"stream": "stdout"},
    "stderr": {"stream": "stderr"},
}


def split_lines_py(
    data: bytes, start: int, end: int, max_line: int, errors: str
) -> tuple[list[str], list[int]]:
    """What ``_speedups.split_lines`` does, in Python (an install without the C module, and its
    tests): the lines of ``data[start:end]``, decoded, without a trailing ``\\r``, empty ones
    skipped, over-long ones cut to ``max_line`` bytes before decoding (their indexes returned)."""
    lines: list[str] = []
    truncated: list[int] = []
    for part in data[start:end].split(b"\n"):
        raw = part[:-1] if part.endswith(b"\r") else part
        if not raw:
            continue
        if len(raw) > max_line:
            raw = _cut_utf8(raw, max_line)
            truncated.append(len(lines))
        lines.append(raw.decode("utf-8", errors))
    return lines, truncated


split_lines = _speedups.split_lines if _speedups is not None else split_lines_py


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """``data[:limit]`` without splitting a UTF-8 sequence at the end."""
    cut = limit
    while cut > 0 and cut > limit - 4 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut] if cut > limit - 4 else data[:limit]


#: Most reads one chunk of over-long lines joins (:meth:`TailedFile.read_chunk`).
JOINED_READS = 8


@dataclass(eq=False)
class TailedFile:
    #: Where the file is now (the positions key); may differ from ``origin.source_id`` once rotated.
    path: str
    device: int
    inode: int
    fingerprint: Fingerprint
    origin: Origin
    checkpoint: Checkpoint
    fd: int | None = None
    read_offset: int = 0
    partial: bytes = b""
    #: Inside an over-long line: discard bytes up to the next newline.
    skipping: bool = False
    #: A watched path names this file; False once rotated away or deleted (read to the end, released).
    live: bool = True
    #: The watched path this file had while live (its rotation siblings start with its name).
    live_path: str = ""
    assembler: Assembler | None = None
    encoding_errors: str = "backslashreplace"
    #: Start offsets of the raw lines the assembler holds (oldest first).
    held_offsets: list[int] = field(default_factory=list)
    #: End of the last complete raw line handed on (or skipped).
    consumed: int = 0
    #: End of the last chunk emitted: where the checkpoint may go.
    emitted: int = 0
    #: End of the last chunk handed to the dispatcher, and whether an over-long line was being
    #: skipped there: where a restarted read loop reads again from (:meth:`rewind`).
    handed_over: int = 0
    handed_over_skipping: bool = False
    #: Lines acknowledged in earlier runs (from the positions file).
    saved_log_count: int = 0
    bytes_read: int = 0
    last_read: float = field(default_factory=time.time)
    #: Monotonic time of the last read or open, for closing idle descriptors.
    last_active: float = field(default_factory=time.monotonic)
    size: int = 0
    #: Modification time (ns) at the last stat: how recent its last write is.
    mtime_ns: int = 0
    #: The state the last :meth:`position_entry` shows, and that entry (made again when the state
    #: changed). Set in ``__post_init__``, as every attribute, so instances share their dict keys.
    _entry: tuple[tuple[object, ...], dict[str, object]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._entry = None
        if not self.live_path:
            self.live_path = self.path
        if not self.consumed:
            self.consumed = self.read_offset
        if not self.emitted:
            self.emitted = self.read_offset
        if not self.handed_over:
            self.handed_over = self.read_offset

    @property
    def stream(self) -> str:
        """The file's identity in its chunks (``Chunk.stream``): ``<device>:<inode>``."""
        return f"{self.device}:{self.inode}"

    @property
    def key(self) -> tuple[int, int]:
        return self.device, self.inode

    @property
    def unread(self) -> bool:
        """Bytes known to exist past what was read."""
        return self.size > self.read_offset

    @property
    def settled(self) -> bool:
        """Everything known was read, emitted and acknowledged."""
        return (
            not self.unread
            and not self.partial
            and (self.assembler is None or self.assembler.held == 0)
            and self.checkpoint.idle
        )

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None

    def position_entry(self) -> dict[str, object]:
        """The file's entry in the positions file (acknowledged offset, identity, counts).

        The same dict is returned again while nothing it shows changed, so taking the entries
        of thousands of idle files is cheap, and so is comparing them with the last written
        (the same objects): callers must not change it."""
        cp = self.checkpoint
        last_read = int(self.last_read)
        state = (
            cp,
            cp.committed,
            cp.acked_lines,
            self.size,
            self.bytes_read,
            last_read,
            self.fingerprint,
            self.live,
            self.live_path,
            self.origin.source_id,
            self.saved_log_count,
            self.inode,
            self.device,
        )
        cached = self._entry
        if cached is not None and state == cached[0]:
            return cached[1]
        entry = self._make_entry(last_read)
        self._entry = (state, entry)
        return entry

    def _make_entry(self, last_read: int) -> dict[str, object]:
        return {
            "offset": self.checkpoint.committed,
            "size": self.size,
            "inode": self.inode,
            "device": self.device,
            **self.fingerprint.as_dict(),
            "source_id": self.origin.source_id,
            "live_path": self.live_path,
            "state": "live" if self.live else "rotated",
            "last_read": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last_read)),
            "log_count": self.saved_log_count + self.checkpoint.acked_lines,
            "bytes_read": self.bytes_read,
        }

    def restart_at(self, offset: int, checkpoint: Checkpoint) -> None:
        """Forget read state and read again from ``offset`` (new content after a truncation)."""
        self.read_offset = self.consumed = self.emitted = self.handed_over = offset
        self.partial = b""
        self.skipping = self.handed_over_skipping = False
        self.held_offsets = []
        self.checkpoint = checkpoint
        self.saved_log_count = 0

    def mark_handed_over(self, chunk: Chunk, skipping: bool | None = None) -> None:
        """``chunk`` is in the dispatcher's hands: the last one made, or one made earlier whose
        file was then ``skipping`` an over-long line (chunks are handed over in the order made)."""
        self.handed_over = chunk.end
        self.handed_over_skipping = self.skipping if skipping is None else skipping

    def rewind(self) -> None:
        """Read again from the end of the last chunk handed over (a crashed read loop restarts).

        What lies after it was never queued: a partial line, the lines the
        assembler holds, a chunk made but not handed over. Reading it again
        sends none of it twice and skips none of it.
        """
        held = self.assembler is not None and self.assembler.held > 0
        if self.read_offset == self.emitted == self.handed_over and not held:
            return
        self.bytes_read -= self.read_offset - self.handed_over
        self.read_offset = self.consumed = self.emitted = self.handed_over
        self.partial = b""
        self.skipping = self.handed_over_skipping
        self.held_offsets = []
        if self.assembler is not None:
            self.assembler.flush()  # its lines lie after handed_over: they are read again

    # -- reading ----------------------------------------------------------------------------
    def read_chunk(self, bufsize: int, max_line: int, now: float) -> tuple[Chunk | None, bool]:
        """Read from the open descriptor: once, or while over-long lines leave the chunk with
        little text. Returns (chunk or None, whether bytes were read).

        A read of lines over ``max_line`` keeps ``max_line`` bytes of each (16 lines of 64 KiB
        cut at 8 KiB: 128 KiB of text from a 1 MiB read), and each chunk costs the pipeline the
        same whatever it holds: such a chunk takes the next reads' lines too (up to
        ``JOINED_READS`` reads), until it holds half a buffer of text or the file has no more;
        never more than ``bufsize`` of text.
        """
        chunk, read = self._read_once(bufsize, max_line, now)
        reads = 1
        while (
            chunk is not None
            and chunk.truncated
            and reads < JOINED_READS
            and self.assembler is None
            and chunk.meta is None
            and self.read_offset < self.size
            and chunk.text_bytes < bufsize // 2
        ):
            # A smaller read, so that the chunk never holds more than ``bufsize`` of text.
            more, _ = self._read_once(bufsize - chunk.text_bytes, max_line, now)
            reads += 1
            if more is None:
                break
            chunk = chunk.joined(more)
        return chunk, read

    def _read_once(self, bufsize: int, max_line: int, now: float) -> tuple[Chunk | None, bool]:
        """Read once from the open descriptor. Returns (chunk or None, whether bytes were read).

        The buffer read is split where it lies: only the line begun in the previous read is
        joined with its end (no copy of the whole buffer), and the lines are decoded straight
        from it, an over-long one cut to ``max_line`` bytes before it is decoded
        (:func:`split_lines`).
        """
        assert self.fd is not None
        if self.size <= self.read_offset:
            return None, False
        data = os.pread(self.fd, bufsize, self.read_offset)
        if not data:
            return None, False
        at = self.read_offset  # the file offset of data[0]
        self.read_offset += len(data)
        self.bytes_read += len(data)
        self.last_read = time.time()
        self.last_active = now
        if self.assembler is not None:
            return self._read_assembled(data, at, max_line, now), True
        start = 0
        if self.skipping:  # no partial while skipping
            nl = data.find(b"\n")
            if nl < 0:
                # Still inside the long line: the checkpoint may pass the discarded bytes.
                self.consumed = self.read_offset
                return self._chunk(Lines(), self.consumed), True
            self.skipping = False
            start = nl + 1
            self.consumed = at + start
        last_nl = data.rfind(b"\n", start)
        partial = self.partial
        if last_nl < 0:
            return self._no_newline(partial, data, start, max_line, now)
        errors = self.encoding_errors
        if partial:
            # The line begun in the last read, joined with its end (at most max_line bytes of it
            # once it is over-long: the rest is cut anyway).
            first_nl = data.find(b"\n", start)
            room = max(max_line + 2 - len(partial), 0)  # +2: a \r\n after the kept bytes
            head = partial + (
                data[start : first_nl + 1] if first_nl - start < room else data[start : start + room] + b"\n"
            )
            lines, truncated = split_lines(head, 0, len(head), max_line, errors)
            if first_nl < last_nl:
                more, cut = split_lines(data, first_nl + 1, last_nl + 1, max_line, errors)
                base = len(lines)
                lines += more
                truncated += [base + i for i in cut]
        else:
            lines, truncated = split_lines(data, start, last_nl + 1, max_line, errors)
        self.partial = data[last_nl + 1 :]
        self.consumed = at + last_nl + 1
        return self._chunk(Lines(lines, None, set(truncated)), self.consumed), True

    def _no_newline(
        self, partial: bytes, data: bytes, start: int, max_line: int, now: float
    ) -> tuple[Chunk | None, bool]:
        """A read with no line end in ``data[start:]``: the line goes on (kept as ``partial``),
        or is over ``max_line``: cut, emitted, and its rest skipped up to the next newline."""
        if len(partial) + len(data) - start > max_line:
            # One byte past max_line: _cut_utf8 looks at it.
            kept = partial[: max_line + 1] + data[start : start + max(max_line + 1 - len(partial), 0)]
            line = _cut_utf8(kept, max_line).decode("utf-8", self.encoding_errors)
            self.partial = b""
            self.skipping = True
            self.consumed = self.read_offset
            return self._chunk(self._assemble_cut(line, now), self.consumed), True
        self.partial = partial + data[start:] if partial else data[start:] if start else data
        return (self._chunk(Lines(), self.consumed), True) if self._may_advance() else (None, True)

    def _read_assembled(self, data: bytes, at: int, max_line: int, now: float) -> Chunk | None:
        """:meth:`read_chunk` with an assembler (multiline, container formats): the held lines'
        offsets are found in the joined buffer."""
        assert self.assembler is not None
        base = at - len(self.partial)
        buf = self.partial + data if self.partial else data
        if self.skipping:
            nl = buf.find(b"\n")
            if nl < 0:
                self.partial = b""
                self.consumed = self.read_offset
                return self._chunk(Lines(), self.consumed)
            self.skipping = False
            buf = buf[nl + 1 :]
            base += nl + 1
            self.consumed = base
        last_nl = buf.rfind(b"\n")
        if last_nl < 0:
            return self._no_newline(b"", buf, 0, max_line, now)[0]
        complete = buf[: last_nl + 1]
        self.partial = buf[last_nl + 1 :]
        self.consumed = base + last_nl + 1
        text, truncated = split_lines(complete, 0, len(complete), max_line, self.encoding_errors)
        lines = Lines(text, None, set(truncated))
        out = self.assembler.feed(lines, now)
        return self._chunk(out, self._hold_position(complete, base, len(lines)))

    def _may_advance(self) -> bool:
        """True when skipped bytes let the checkpoint move although no record was emitted."""
        return self.emitted < self.consumed and (self.assembler is None or self.assembler.held == 0)

    def _assemble_cut(self, line: str, now: float) -> Lines:
        """A line cut without its end: flush what the assembler holds, then the cut line alone."""
        cut = Lines([line], None, {0})
        if self.assembler is None:
            return cut
        out = self.assembler.flush()
        out.extend(self.assembler.feed(cut, now))
        out.extend(self.assembler.flush())
        self.held_offsets = []
        return out

    def _hold_position(self, complete: bytes, base: int, fed: int) -> int:
        """Where the checkpoint may go: the start of the first raw line the assembler still holds."""
        assert self.assembler is not None
        held = self.assembler.held
        if held == 0:
            self.held_offsets = []
            return self.consumed
        new = min(held, fed)
        offsets: list[int] = []
        pos = len(complete) - 1  # at the newline ending the last line
        while len(offsets) < new and pos >= 0:
            prev = complete.rfind(b"\n", 0, pos)
            start = prev + 1
            length = pos - start
            if length > 1 or (length == 1 and complete[start] != 0x0D):
                offsets.append(base + start)
            pos = prev
        offsets.reverse()
        older = held - new
        self.held_offsets = (self.held_offsets[-older:] if older else []) + offsets
        return self.held_offsets[0]

    def flush_assembler(self) -> Chunk | None:
        """Emit what the assembler holds (timeout, rotation done, stop)."""
        if self.assembler is None or self.assembler.held == 0:
            return None
        out = self.assembler.flush()
        self.held_offsets = []
        return self._chunk(out, self.consumed)

    def _chunk(self, lines: Lines, end: int) -> Chunk:
        meta: list[dict[str, Any] | None] | None = None
        if lines.streams is not None:
            meta = [STREAM_FIELDS.get(s) for s in lines.streams]
        chunk = Chunk(self.origin, lines.text, self.emitted, max(end, self.emitted), meta=meta)
        chunk.stream = self.stream
        if lines.truncated:
            chunk.truncated = frozenset(lines.truncated)
        self.emitted = chunk.end
        return chunk
