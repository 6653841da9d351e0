"""Container log file formats, decoded a batch at a time.

- Docker ``json-file``: one JSON object per line,
  ``{"log": "text\\n", "stream": "stdout", "time": "2026-01-01T00:00:00.123456789Z"}``.
  Docker splits lines longer than 16 KiB into several objects; only the last
  one's ``log`` ends with ``\\n``.
- CRI (Kubernetes, containerd, CRI-O): ``<RFC 3339 time> <stream> <tag> <text>``,
  where the tag's first field is ``P`` (partial: more of this line follows) or
  ``F`` (full, the last part).

Both decoders reassemble split lines and hold the parts until the last one
arrives (so the checkpoint stays before them); a split line that never
finishes is emitted after ``timeout``. A reassembled line longer than
``max_bytes`` is cut there and marked truncated, and its remaining parts are
discarded. A line that is not in the format (damaged file) is passed on
unchanged. The decoders emit exactly one record per raw line group, sometimes
empty; :class:`Finish` then drops empty records and excluded streams.
"""

from __future__ import annotations

import orjson

from log_capturer.processing.assembly import Assembler, Lines

_loads = orjson.loads


class _Partial:
    """The parts of one stream's unfinished line."""

    __slots__ = ("discarding", "first", "parts", "raw", "since", "size")

    def __init__(self, first: int, since: float) -> None:
        #: Index (among every raw line fed) of its first part.
        self.first = first
        self.since = since
        self.parts: list[str] = []
        self.raw = 0
        self.size = 0
        #: A line that was cut at max_bytes: its later parts are discarded.
        self.discarding = False


class _Reassembler:
    """Common part of the decoders: partial-line reassembly per stream, with a byte cap and a
    timeout.

    Each stream (stdout, stderr) joins its own parts: Docker writes the parts of a long stderr
    line between the lines of a busy stdout, and they still make one record. While a stream's
    line is unfinished, :attr:`held` counts every raw line from its first part on (the tail keeps
    the checkpoint before that part), also the lines of the other stream emitted meanwhile: after
    a crash those are read again (at most the span of one split line), never lost.
    """

    def __init__(self, max_bytes: int, timeout: float) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._open: dict[str, _Partial] = {}
        #: Raw lines fed so far.
        self._fed = 0

    @property
    def held(self) -> int:
        if not self._open:
            return 0
        return self._fed - min(p.first for p in self._open.values())

    def due(self, now: float) -> bool:
        return any(now - p.since >= self.timeout for p in self._open.values())

    @staticmethod
    def _emit(out: Lines, text: str, stream: str, raw: int, truncated: bool = False) -> None:
        assert out.raw is not None and out.streams is not None
        if truncated:
            out.truncated.add(len(out.text))
        out.text.append(text)
        out.raw.append(raw)
        out.streams.append(stream)

    def _flush_pending(self, out: Lines) -> None:
        """Emit every stream's unfinished line, oldest first."""
        for stream, p in sorted(self._open.items(), key=lambda item: item[1].first):
            self._emit(out, "" if p.discarding else "".join(p.parts), stream, p.raw)
        self._open.clear()

    def _add(self, out: Lines, text: str, stream: str, final: bool, now: float) -> None:
        index = self._fed
        self._fed += 1
        p = self._open.get(stream)
        if p is None:
            if final and len(text) <= self.max_bytes:  # a whole line: the usual case
                self._emit(out, text, stream, 1)
                return
            p = self._open[stream] = _Partial(index, now)
        p.raw += 1
        if p.discarding:
            if final:
                self._emit(out, "", stream, p.raw)
                del self._open[stream]
            return
        p.size += len(text)
        if p.size > self.max_bytes:
            joined = "".join(p.parts) + text
            cut = joined.encode()[: self.max_bytes].decode("utf-8", "ignore")
            self._emit(out, cut, stream, p.raw, truncated=True)
            if final:
                del self._open[stream]
            else:  # the rest of it is a record of its own, emitted empty
                p.first, p.raw, p.parts, p.discarding = self._fed, 0, [], True
            return
        p.parts.append(text)
        if final:
            self._emit(out, "".join(p.parts), stream, p.raw)
            del self._open[stream]

    def flush(self) -> Lines:
        out = Lines([], [], set(), [])
        self._flush_pending(out)
        return out

    def _invalid(self, out: Lines, line: str) -> None:
        self._flush_pending(out)
        self._fed += 1
        self._emit(out, line, "", 1)


class DockerJsonDecoder(_Reassembler):
    """Decodes Docker json-file lines into messages and streams."""

    def feed(self, batch: Lines, now: float) -> Lines:
        out = Lines([], [], set(), [])
        for line in batch.text:
            try:
                obj = _loads(line)
                msg = obj["log"]
                stream = obj.get("stream", "")
                if not isinstance(msg, str) or not isinstance(stream, str):
                    raise TypeError
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                self._invalid(out, line)
                continue
            final = msg.endswith("\n")
            if final:
                msg = msg[:-2] if msg.endswith("\r\n") else msg[:-1]
            self._add(out, msg, stream, final, now)
        return out


class CriDecoder(_Reassembler):
    """Decodes CRI log lines (``time stream P|F text``) into messages and streams."""

    def feed(self, batch: Lines, now: float) -> Lines:
        out = Lines([], [], set(), [])
        for line in batch.text:
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("stdout", "stderr"):
                self._invalid(out, line)
                continue
            tag = parts[2]
            flag = tag.split(":", 1)[0]
            if flag not in ("P", "F"):
                self._invalid(out, line)
                continue
            self._add(out, parts[3] if len(parts) == 4 else "", parts[1], flag == "F", now)
        return out


class Finish:
    """Last stage: drops empty records and records of excluded streams."""

    def __init__(self, inner: Assembler, drop_streams: frozenset[str] = frozenset()) -> None:
        self.inner = inner
        self.drop_streams = drop_streams

    @property
    def held(self) -> int:
        return self.inner.held

    def due(self, now: float) -> bool:
        return self.inner.due(now)

    def feed(self, batch: Lines, now: float) -> Lines:
        return self._filter(self.inner.feed(batch, now))

    def flush(self) -> Lines:
        return self._filter(self.inner.flush())

    def _filter(self, res: Lines) -> Lines:
        streams = res.streams
        drop = self.drop_streams
        keep = [i for i, text in enumerate(res.text) if text and (streams is None or streams[i] not in drop)]
        if len(keep) == len(res.text):
            return res
        out = Lines([res.text[i] for i in keep], None, set())
        if streams is not None:
            out.streams = [streams[i] for i in keep]
        if res.truncated:
            out.truncated = {n for n, i in enumerate(keep) if i in res.truncated}
        return out
