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


class _Reassembler:
    """Common part of the decoders: partial-line reassembly with a byte cap and a timeout."""

    def __init__(self, max_bytes: int, timeout: float) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._parts: list[str] = []
        self._raw = 0
        self._size = 0
        self._stream = ""
        self._since = 0.0
        #: A line that was cut at max_bytes: its later parts are discarded.
        self._discarding = False

    @property
    def held(self) -> int:
        return self._raw

    def due(self, now: float) -> bool:
        return self._raw > 0 and now - self._since >= self.timeout

    def _emit(self, out: Lines, text: str, stream: str, truncated: bool = False) -> None:
        assert out.raw is not None and out.streams is not None
        if truncated:
            out.truncated.add(len(out.text))
        out.text.append(text)
        out.raw.append(self._raw)
        out.streams.append(stream)
        self._parts = []
        self._raw = 0
        self._size = 0

    def _flush_pending(self, out: Lines) -> None:
        if self._raw:
            self._emit(out, "" if self._discarding else "".join(self._parts), self._stream)
        self._discarding = False

    def _add(self, out: Lines, text: str, stream: str, final: bool, now: float) -> None:
        if self._raw and stream != self._stream:
            self._flush_pending(out)  # interleaved streams: never join across them
        if not self._raw:
            self._since = now
            self._stream = stream
        self._raw += 1
        if self._discarding:
            if final:
                self._emit(out, "", stream)
                self._discarding = False
            return
        self._size += len(text)
        if self._size > self.max_bytes:
            joined = "".join(self._parts) + text
            cut = joined.encode()[: self.max_bytes].decode("utf-8", "ignore")
            self._emit(out, cut, stream, truncated=True)
            if not final:
                self._discarding = True
            return
        if final:
            if self._parts:
                self._parts.append(text)
                text = "".join(self._parts)
            self._emit(out, text, stream)
        else:
            self._parts.append(text)

    def flush(self) -> Lines:
        out = Lines([], [], set(), [])
        self._flush_pending(out)
        return out

    def _invalid(self, out: Lines, line: str) -> None:
        self._flush_pending(out)
        self._raw = 1
        self._emit(out, line, "")


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
