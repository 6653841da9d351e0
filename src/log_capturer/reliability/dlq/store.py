"""The local dead-letter store.

Entries are JSON objects with the fields users of the original agent know
(``entry_id``, ``timestamp``, ``original_entry``, ``error_message``,
``error_type``, ``failed_sink``, ``retry_count``, ``reprocess_attempts``,
``next_reprocess_time``), plus ``topic`` and ``key`` so they can be replayed
to where they were going, and ``last_reprocess_error``. They are appended, one
per line, to segment files ``dlq_entry_<UTC time>_<pid>_<seq>.json`` in
``dispatcher.dlq_config.directory``; ``cat dlq_entry_*.json | jq .error_message``
works on them.

Durability (the fsync policy): :meth:`DeadLetterStore.park` returns only after
its entries are written and ``fsync``ed (one write and one fsync per call, plus
the directory when a segment is created), so a line acknowledged because it
was parked survives a crash or power loss. Rewrites (after a replay, a purge,
expiry) go to a temporary file that is fsynced, then renamed over the segment,
then the directory is fsynced: a crash leaves the old or the new segment,
never half of one.

Limits: ``max_size_mb`` (all segments together) and ``max_files``; a segment
takes up to ``max_size_mb / max_files``. When the store is full, ``park``
raises :class:`DLQFullError` (the caller keeps the lines waiting: backpressure)
unless ``when_full: drop_oldest``. Entries older than ``retention_days`` are
removed by :meth:`expire`.

Several processes may use one directory (the agent, and ``log-capturer dlq``
commands): every change happens under an exclusive ``flock`` on
``<directory>/.lock``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from log_capturer.observability.metrics import Metrics
from log_capturer.reliability.config import DispatcherDLQConfig

SEGMENT_PREFIX = "dlq_entry_"
LOCK_NAME = ".lock"
MIB = 1024 * 1024


class DLQWriteError(OSError):
    """The store could not durably write an entry (unwritable directory, disk full, ...)."""


class DLQFullError(DLQWriteError):
    """The store reached ``max_size_mb`` or ``max_files``."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return 0.0


@dataclass
class DLQEntry:
    """A record to park: what it was (the JSON record as sent to Kafka) and why it failed.

    A record that is not a JSON object written as orjson writes it (``encoding.codec: raw`` or
    ``logfmt``) also keeps its exact bytes: ``value`` (its UTF-8 text) or ``value_base64``;
    ``original_entry`` is then the parsed object if it is one, else ``{"raw": text}``, for people
    to read. ``headers``: the Kafka headers it was sent with ([name, text] pairs), replayed as
    they were."""

    original_entry: dict[str, Any]
    error_message: str
    error_type: str
    failed_sink: str
    topic: str = ""
    key: str | None = None
    retry_count: int = 0
    value: bytes | None = None
    headers: list[tuple[str, str | bytes | None]] | None = None

    def to_doc(self, now: float, next_reprocess: float) -> dict[str, Any]:
        return {
            "entry_id": uuid.uuid4().hex,
            "timestamp": iso(now),
            "original_entry": self.original_entry,
            "error_message": self.error_message,
            "error_type": self.error_type,
            "failed_sink": self.failed_sink,
            "topic": self.topic,
            "key": self.key,
            "retry_count": self.retry_count,
            "reprocess_attempts": 0,
            "next_reprocess_time": iso(next_reprocess),
            **self._exact(),
        }

    def _exact(self) -> dict[str, Any]:
        """What a replay needs beyond the JSON record: the exact value, and the headers."""
        out: dict[str, Any] = {}
        if self.value is not None:
            try:
                out["value"] = self.value.decode()
            except UnicodeDecodeError:
                out["value_base64"] = base64.b64encode(self.value).decode()
        if self.headers:
            out["headers"] = [
                [name, v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v]
                for name, v in self.headers
            ]
        return out


@dataclass
class _Summary:
    """What :meth:`DeadLetterStore.stats` needs of one segment, cached by (size, mtime)."""

    signature: tuple[int, int]
    entries: int = 0
    corrupt: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    oldest: float = 0.0
    newest: float = 0.0
    #: (next_reprocess_time, reprocess_attempts) of each entry.
    schedule: list[tuple[float, int]] = field(default_factory=list)


class DeadLetterStore:
    def __init__(
        self,
        config: DispatcherDLQConfig,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.directory = Path(config.directory)
        self.metrics = metrics
        self._clock = clock
        self._lock = threading.Lock()
        self._seq = 0
        self._summaries: dict[str, _Summary] = {}
        self.max_bytes = config.max_size_mb * MIB
        self.segment_bytes = max(1, self.max_bytes // config.max_files)
        #: Entries this process parked (since start).
        self.entries_written = 0
        #: The last write failure ('' once a write succeeded again).
        self.last_error = ""
        self.full = False

    # -- locking and layout ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise DLQWriteError(
                    exc.errno,
                    f"cannot use the DLQ directory {self.directory} (dispatcher.dlq_config.directory): "
                    f"{exc.strerror or exc}",
                ) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        try:
            names = sorted(
                n for n in os.listdir(self.directory) if n.startswith(SEGMENT_PREFIX) and n.endswith(".json")
            )
        except FileNotFoundError:
            return []
        return [self.directory / n for n in names]

    def _new_segment(self) -> Path:
        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        return self.directory / f"{SEGMENT_PREFIX}{stamp}_{os.getpid()}_{self._seq:06d}.json"

    def _fsync_dir(self) -> None:
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # -- parking ---------------------------------------------------------------------------------
    def park(self, entries: list[DLQEntry]) -> None:
        """Append ``entries`` durably, or raise :class:`DLQWriteError` / :class:`DLQFullError`."""
        if not entries:
            return
        now = self._clock()
        due = now + self.config.reprocessing_config.initial_delay
        payload = b"".join(orjson.dumps(e.to_doc(now, due)) + b"\n" for e in entries)
        try:
            with self._locked():
                self._append(payload, len(entries))
        except DLQWriteError as exc:
            self._failed(exc)
            raise
        except OSError as exc:
            error = DLQWriteError(
                exc.errno, f"cannot write the DLQ in {self.directory}: {exc.strerror or exc}"
            )
            self._failed(error)
            raise error from exc
        self.last_error = ""
        self.full = False
        self.entries_written += len(entries)

    def _failed(self, exc: DLQWriteError) -> None:
        self.last_error = str(exc)
        self.full = isinstance(exc, DLQFullError)
        if self.metrics is not None:
            self.metrics.errors.labels("dlq", "full" if self.full else "write_failed").inc()

    def _append(self, payload: bytes, count: int) -> None:
        segs = [(p, p.stat().st_size) for p in self.segments()]
        need = len(payload)
        while True:
            total = sum(size for _, size in segs)
            last_fits = bool(segs) and segs[-1][1] + need <= self.segment_bytes
            fits = total + need <= self.max_bytes and (last_fits or len(segs) < self.config.max_files)
            if fits:
                break
            if self.config.when_full != "drop_oldest" or not segs:
                raise DLQFullError(
                    0,
                    f"the DLQ in {self.directory} is full: {total / MIB:.1f} MiB in {len(segs)} files, "
                    f"{need} more bytes do not fit (dispatcher.dlq_config.max_size_mb="
                    f"{self.config.max_size_mb}, max_files={self.config.max_files}); lines wait until "
                    "entries are replayed or purged (`log-capturer dlq replay`, `log-capturer dlq purge`)",
                )
            oldest, _ = segs.pop(0)
            self._drop_segment(oldest)
        created = not last_fits
        target = self._new_segment() if created else segs[-1][0]
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if not created and segs[-1][1] > 0 and os.pread(fd, 1, segs[-1][1] - 1) != b"\n":
                # A crash cut the last entry short: start on a line of our own.
                payload = b"\n" + payload
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            self._fsync_dir()

    def _drop_segment(self, path: Path) -> None:
        dropped = sum(1 for line in path.read_bytes().splitlines() if line.strip())
        path.unlink()
        self._fsync_dir()
        self._removed("dropped_full", dropped)

    def _removed(self, reason: str, count: int) -> None:
        if count and self.metrics is not None:
            self.metrics.dlq_entries_removed.labels(reason).inc(count)

    # -- reading ---------------------------------------------------------------------------------
    def read(self) -> list[tuple[str, dict[str, Any]]]:
        """Every entry as (segment name, entry), oldest first. Unparsable lines are skipped."""
        with self._locked():
            out: list[tuple[str, dict[str, Any]]] = []
            for seg in self.segments():
                out.extend((seg.name, doc) for doc in _docs(seg.read_bytes()))
            return out

    def select(
        self,
        *,
        now: float | None = None,
        due_only: bool = True,
        limit: int | None = None,
        reason: str | None = None,
        replayable: bool = False,
    ) -> list[dict[str, Any]]:
        """Entries to replay: with ``due_only``, those whose next_reprocess_time passed, older than
        ``min_entry_age`` and with fewer than ``max_retries`` attempts; oldest first. Without it,
        every entry (``replayable``: those with a topic to replay to)."""
        t = self._clock() if now is None else now
        out: list[dict[str, Any]] = []
        for _, doc in self.read():
            if reason is not None and doc.get("error_type") != reason:
                continue
            if due_only and not self._due(doc, t):
                continue
            if replayable and not _replayable(doc):
                continue
            out.append(doc)
            if limit is not None and len(out) >= limit:
                break
        return out

    def _due(self, doc: dict[str, Any], now: float) -> bool:
        rp = self.config.reprocessing_config
        return (
            _replayable(doc)
            and int(doc.get("reprocess_attempts", 0)) < rp.max_retries
            and parse_iso(str(doc.get("next_reprocess_time", ""))) <= now
            and now - parse_iso(str(doc.get("timestamp", ""))) >= rp.min_entry_age
        )

    def stats(self) -> dict[str, Any]:
        """Counts for ``GET /dlq/stats`` and ``log-capturer dlq stats``; only changed segments are read."""
        now = self._clock()
        rp = self.config.reprocessing_config
        with self._locked():
            seen: set[str] = set()
            for seg in self.segments():
                st = seg.stat()
                sig = (st.st_size, st.st_mtime_ns)
                seen.add(seg.name)
                cached = self._summaries.get(seg.name)
                if cached is None or cached.signature != sig:
                    self._summaries[seg.name] = _summarize(seg.read_bytes(), sig)
            for name in set(self._summaries) - seen:
                del self._summaries[name]
            sums = list(self._summaries.values())
        by_reason: Counter[str] = Counter()
        for s in sums:
            by_reason.update(s.by_reason)
        entries = sum(s.entries for s in sums)
        size = sum(s.signature[0] for s in sums)
        oldest = min((s.oldest for s in sums if s.oldest), default=0.0)
        newest = max((s.newest for s in sums), default=0.0)
        exhausted = sum(1 for s in sums for _, attempts in s.schedule if attempts >= rp.max_retries)
        due = sum(1 for s in sums for t, attempts in s.schedule if attempts < rp.max_retries and t <= now)
        if self.metrics is not None:
            self.metrics.dlq_entries.set(entries)
            self.metrics.dlq_size_bytes.set(size)
        return {
            "directory": str(self.directory),
            "entries": entries,
            "size_bytes": size,
            "segments": len(sums),
            "corrupt_lines": sum(s.corrupt for s in sums),
            "by_reason": dict(by_reason),
            "oldest_entry": iso(oldest) if oldest else None,
            "newest_entry": iso(newest) if newest else None,
            "due_for_reprocessing": due,
            "exhausted": exhausted,
            "full": self.full,
            "last_error": self.last_error,
            "entries_written_since_start": self.entries_written,
            "limits": {
                "max_size_mb": self.config.max_size_mb,
                "max_files": self.config.max_files,
                "retention_days": self.config.retention_days,
                "when_full": self.config.when_full,
            },
        }

    # -- changing entries ------------------------------------------------------------------------
    def settle(self, delivered: set[str], failed: dict[str, str], *, count_attempt: bool = True) -> None:
        """After a replay: remove ``delivered`` entries; for ``failed`` ones (id -> error), count the
        attempt and push ``next_reprocess_time`` back exponentially."""
        if not delivered and not failed:
            return
        rp = self.config.reprocessing_config
        now = self._clock()

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            eid = doc.get("entry_id")
            if eid in delivered:
                return None
            if eid in failed:
                attempts = int(doc.get("reprocess_attempts", 0)) + (1 if count_attempt else 0)
                delay = min(rp.initial_delay * rp.delay_multiplier ** max(attempts, 0), rp.max_delay)
                doc["reprocess_attempts"] = attempts
                doc["next_reprocess_time"] = iso(now + delay)
                doc["last_reprocess_error"] = failed[eid]
            return doc

        self._rewrite(change, {*delivered, *failed})
        self._removed("replayed", len(delivered))

    def remove(self, keep: Callable[[dict[str, Any]], bool], reason: str) -> int:
        """Delete every entry for which ``keep`` is false; returns how many."""
        removed = self._rewrite(lambda doc: doc if keep(doc) else None, None)
        self._removed(reason, removed)
        return removed

    def expire(self) -> int:
        """Delete entries parked more than ``retention_days`` ago."""
        cutoff = self._clock() - self.config.retention_days * 86400
        return self.remove(lambda d: parse_iso(str(d.get("timestamp", ""))) >= cutoff, "expired")

    def _rewrite(
        self, change: Callable[[dict[str, Any]], dict[str, Any] | None], ids: set[str] | None
    ) -> int:
        """Apply ``change`` to the entries whose id is in ``ids`` (None: to every entry, which it keeps
        unchanged or removes); returns how many were removed."""
        removed = 0
        with self._locked():
            for seg in self.segments():
                data = seg.read_bytes()
                if ids is not None and len(ids) <= 8 and not any(i.encode() in data for i in ids):
                    continue  # a quick look for a few ids; many are found by parsing
                lines: list[bytes] = []
                changed = False
                for raw, doc in _parsed(data):
                    if doc is None:
                        lines.append(raw)  # never delete what cannot be read
                        continue
                    if ids is not None and doc.get("entry_id") not in ids:
                        lines.append(raw)
                        continue
                    new = change(doc)
                    if new is None:
                        removed += 1
                        changed = True
                    elif ids is None:
                        lines.append(raw)  # kept as it was
                    else:
                        lines.append(orjson.dumps(new))
                        changed = True
                if not changed:
                    continue
                if lines:
                    tmp = seg.with_name(f".{seg.name}.tmp")
                    tmp.write_bytes(b"\n".join(lines) + b"\n")
                    with open(tmp, "rb") as f:
                        os.fsync(f.fileno())
                    os.replace(tmp, seg)
                else:
                    seg.unlink()
                self._fsync_dir()
        return removed


def _parsed(data: bytes) -> Iterator[tuple[bytes, dict[str, Any] | None]]:
    """Each non-empty line of a segment with its entry, or None when it is not a JSON object."""
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        yield raw, doc if isinstance(doc, dict) else None


def _docs(data: bytes) -> Iterator[dict[str, Any]]:
    return (doc for _, doc in _parsed(data) if doc is not None)


def _replayable(doc: dict[str, Any]) -> bool:
    """Whether reprocessing may replay the entry: an entry without a topic is a record a source
    rejected (HTTP ingest's invalid records), kept for people to read, never due nor exhausted."""
    return bool(doc.get("topic"))


def _summarize(data: bytes, signature: tuple[int, int]) -> _Summary:
    s = _Summary(signature)
    for _, doc in _parsed(data):
        if doc is None:
            s.corrupt += 1
            continue
        s.entries += 1
        s.by_reason[str(doc.get("error_type", ""))] += 1
        ts = parse_iso(str(doc.get("timestamp", "")))
        if ts and (not s.oldest or ts < s.oldest):
            s.oldest = ts
        s.newest = max(s.newest, ts)
        if not _replayable(doc):
            continue
        s.schedule.append(
            (parse_iso(str(doc.get("next_reprocess_time", ""))), int(doc.get("reprocess_attempts", 0)))
        )
    return s
