"""The local file sink's service: records to files, each record's outcome to the engine.

Roles: :meth:`LocalFileService.prepare` (a dispatcher thread) turns a chunk into its JSON records
(the very bytes sent to Kafka, kept for the DLQ) and the bytes written (the JSON record, or its
text line); :meth:`~LocalFileService.send` hands them to the writer thread that owns their file
(``worker_count`` writers; a file always has the same one, so its records keep their order).
A writer appends a batch in one ``write``, syncs as ``auto_sync`` / ``sync_interval`` say, and only
then reports the records delivered; rotates files by size and by the pattern's time; hands closed
files to the housekeeper (gzip, retention). The service's own thread reports outcomes to the
runner and runs its round (``runner.tick``).

What an error means: an ``OSError`` writing, syncing or opening a file (a full disk, an unwritable
directory, an I/O error) is retriable (:attr:`Failure.RETRY`): what was appended of that batch is
cut off again (``ftruncate``), the file is reopened at the next attempt, and the engine retries
with back-off, then opens the breaker and overflows to the local DLQ after ``timeout``. A record
that cannot be written for its own sake (its text cannot be encoded, its file name is too long) is
rejected (:attr:`Failure.REJECT`) and parked with the reason. A failed ``fsync`` of an interval's
batches retries them all: the data may be on disk already, so those lines may appear twice.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import gzip
import logging
import os
import queue
import shutil
import stat
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from log_capturer.engine.contract import Failure, Record, Refused, ServiceState
from log_capturer.record import Chunk
from log_capturer.sinks.base import SinkStartError
from log_capturer.sinks.kafka.encode import encode_chunk
from log_capturer.sinks.local_file.config import LocalFileSinkConfig
from log_capturer.sinks.local_file.files import (
    Namer,
    TextFormatter,
    describe_sync,
    expired,
    is_size_rotated,
    rotated_name,
)

if TYPE_CHECKING:
    from log_capturer.engine.contract import Prepared
    from log_capturer.engine.runner import Attempt, Delivery, SinkRunner
    from log_capturer.reliability.dlq.replay import ReplayRecord

log = logging.getLogger(__name__)

#: Errors that are the record's own (its file's name: too long, a directory), not the disk's:
#: rejected, not retried.
OWN_ERRORS = frozenset({errno.ENAMETOOLONG, errno.EINVAL, errno.EISDIR})
#: A writer's round: how often it checks for time rotation and due syncs while idle.
ROUND = 0.1
#: Open files not written for this long are closed (they are reopened when needed).
IDLE_CLOSE = 60.0
#: How often the housekeeper applies retention when no file was rotated.
HOUSEKEEPING_EVERY = 30.0


@dataclass(slots=True)
class Item:
    """One record on its way to a file. ``kind``: 'new' (``owner`` is its Delivery), 'attempt'
    (an Attempt), 'replay' (a :class:`_Replay` and ``entry_id``)."""

    record: Record
    data: bytes
    key: tuple[str, str, str]
    kind: str
    owner: Any
    entry_id: str = ""


class LocalFilePrepared:
    """A chunk's records and the bytes written for each (``None``: refused)."""

    __slots__ = ("chunk", "counts", "items", "nbytes", "refused")

    def __init__(self, chunk: Chunk, items: list[Item], refused: list[Refused]) -> None:
        self.chunk = chunk
        self.items = items
        self.refused = refused
        self.nbytes = sum(len(i.data) for i in items) + sum(len(r.record.value) for r in refused)
        self.counts = {items[0].record.topic if items else refused[0].record.topic: len(chunk.lines)}


@dataclass
class _Replay:
    """One replay call waiting for its records' outcomes."""

    results: dict[str, str | None] = field(default_factory=dict)
    expected: int = 0
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Open:
    fd: int
    size: int
    key: tuple[str, str, str]
    last_write: float


class LocalFileService:
    """See the module's docstring."""

    def __init__(self, config: LocalFileSinkConfig, key_field: str | None, name: str) -> None:
        self.config = config
        self.key_field = key_field
        self.name = name
        self.directory = Path(config.directory)
        self.namer = Namer(config.filename_pattern)
        self.text = TextFormatter(config.text_format) if config.output_format == "text" else None
        #: What the DLQ entries and the per-destination metrics call this sink's destination.
        self.default_destination = config.filename_pattern
        self._used = tuple(
            i
            for i, p in enumerate(("source_type", "source_id", "level"))
            if f"{{{p}}}" in config.filename_pattern
        )
        self._runner: SinkRunner | None = None
        self._writers: list[_Writer] = []
        self._housekeeper: _Housekeeper | None = None
        self._outcomes: collections.deque[tuple[Item, Failure | None, str, str]] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held_lock = threading.Lock()
        self._held = 0
        #: Names of the files being written (retention never deletes them), under ``open_lock``.
        self.open_lock = threading.Lock()
        self.open_names: set[str] = set()
        #: The last retriable write error ('' once a write succeeds): the directory is unusable.
        self.failing = ""
        self.last_error = ""
        self.thread_error = ""
        self.stopped = False
        #: Records still failing this long after they were handed over are reported timed out,
        #: so the engine parks them (0: never; the sink sets it when it has a local DLQ).
        self.park_after = 0.0
        #: The wall clock file names and rotation follow (UTC).
        self.clock: Callable[[], float] = time.time
        self.written = 0
        self.bytes_written = 0
        self.syncs = 0
        self.rotations = 0
        self.compressed = 0
        self.deleted = 0

    @property
    def runner(self) -> SinkRunner:
        assert self._runner is not None, "not started"
        return self._runner

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, runner: SinkRunner) -> None:
        try:
            make_dirs(self.directory, self.config.dir_permissions)
        except OSError as exc:
            raise SinkStartError(
                f"sinks.local_file.directory: cannot create {self.directory}: {exc.strerror}; "
                "set it to a directory the agent may write"
            ) from None
        self._runner = runner
        if self.config.rotation.enabled:
            self._housekeeper = _Housekeeper(self)
            self._housekeeper.start()
        self._writers = [_Writer(self, i) for i in range(self.config.worker_count)]
        for w in self._writers:
            w.start()
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopped = True
        for w in self._writers:
            w.inbox.put(None)
        for w in self._writers:
            w.join(10.0)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._housekeeper is not None:
            self._housekeeper.stop()

    # -- the engine's calls --------------------------------------------------------------------
    def prepare(self, chunk: Chunk) -> LocalFilePrepared:
        items: list[Item] = []
        refused: list[Refused] = []
        for rec in self.records_of(chunk):
            try:
                items.append(self.item_of(rec, "new", None))
            except (ValueError, UnicodeError, orjson.JSONDecodeError) as exc:
                refused.append(Refused(rec, "marshal_error", f"cannot be written as text: {exc}"))
        return LocalFilePrepared(chunk, items, refused)

    def records_of(self, chunk: Chunk) -> list[Record]:
        dest = self.default_destination
        return [Record(dest, value, None) for value in encode_chunk(chunk, self.key_field)]

    def item_of(self, record: Record, kind: str, owner: Any, entry_id: str = "") -> Item:
        """The bytes written for ``record`` (its JSON, or its text line) and its file's key."""
        doc = orjson.loads(record.value)
        key = (str(doc.get("source_type", "")), str(doc.get("source_id", "")), str(doc.get("level", "")))
        if self.text is None:
            data = record.value + b"\n"
        else:
            labels = doc.get("labels")
            line = self.text.line(
                str(doc.get("timestamp", "")),
                key[2],
                key[0],
                key[1],
                labels if isinstance(labels, dict) else {},
                str(doc.get("message", "")),
            )
            data = line.encode("utf-8") + b"\n"
        return Item(record, data, key, kind, owner, entry_id)

    def send(self, prepared: Prepared, delivery: Delivery) -> list[Refused]:
        assert isinstance(prepared, LocalFilePrepared)
        for item in prepared.items:
            item.owner = delivery
        self._hand(prepared.items)
        return prepared.refused

    def _hand(self, items: list[Item]) -> None:
        """Give each record to the writer of its file (by the placeholders the pattern uses)."""
        if not items:
            return
        with self._held_lock:
            self._held += len(items)
        writers = self._writers
        if len(writers) == 1:
            writers[0].inbox.put(items)
            return
        shares: dict[int, list[Item]] = {}
        for item in items:
            idx = hash(tuple(item.key[i] for i in self._used)) % len(writers)
            shares.setdefault(idx, []).append(item)
        for idx, share in shares.items():
            writers[idx].inbox.put(share)

    def resend(self, attempt: Attempt, alone: bool) -> bool:
        try:
            item = self.item_of(attempt.record, "attempt", attempt)
        except (ValueError, UnicodeError) as exc:
            self.runner.attempt_done(attempt, Failure.REJECT, "marshal_error", f"cannot be written: {exc}")
            return True
        self._hand([item])
        return True

    def dead_letter(self, attempt: Attempt) -> bool | None:
        return None  # no dead-letter output of its own: the engine parks in the local store

    def idle(self) -> None:
        pass  # nothing lingers: a batch is written as soon as a writer takes it

    def flush_soon(self) -> None:
        for w in self._writers:
            w.sync_now.set()

    def queued(self) -> int:
        return self._held

    def state(self) -> ServiceState:
        dead = self._thread is not None and not self._thread.is_alive() and not self._stop.is_set()
        dead = dead or any(not w.is_alive() for w in self._writers if not self._stop.is_set())
        return ServiceState(
            unreachable=bool(self.failing),
            unreachable_as=f"cannot write to {self.directory}",
            thread_error=self.thread_error,
            thread_dead=dead,
            last_error=self.failing or self.last_error,
            details={"directory": str(self.directory), "sync": describe_sync(self.config)},
        )

    def probe(self) -> str:
        """Create, sync and remove a small file in the directory."""
        path = self.directory / f".probe-{os.getpid()}-{threading.get_ident()}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, b"probe\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            path.unlink()
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
        self.failing = ""
        return ""

    def stats(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "records_written": self.written,
            "bytes_written": self.bytes_written,
            "syncs": self.syncs,
            "rotations": self.rotations,
            "files_compressed": self.compressed,
            "files_deleted": self.deleted,
            "open_files": len(self.open_names),
        }

    def replay(self, records: list[ReplayRecord], timeout: float) -> dict[str, str | None]:
        """Write parked records again, to the file their record names now."""
        if self.stopped:
            return {r.entry_id: "the sink is stopped" for r in records}
        waiter = _Replay()
        items: list[Item] = []
        for r in records:
            try:
                items.append(self.item_of(Record(r.topic, r.value, r.key), "replay", waiter, r.entry_id))
            except (ValueError, UnicodeError) as exc:
                waiter.results[r.entry_id] = f"cannot be written: {exc}"
        waiter.expected = len(items)
        if not items:
            return waiter.results
        self._hand(items)
        waiter.done.wait(timeout)
        return {r.entry_id: waiter.results.get(r.entry_id, "not written within the timeout") for r in records}

    # -- outcomes (writers -> the service's thread) --------------------------------------------
    def report(self, items: list[Item], failure: Failure | None, etype: str = "", text: str = "") -> None:
        outcomes = self._outcomes
        for item in items:
            outcomes.append((item, failure, etype, text))
        self._wake.set()

    def _loop(self) -> None:
        runner = self.runner
        last_probe = 0.0
        while not self._stop.is_set():
            self._wake.wait(0.01)
            self._wake.clear()
            try:
                self._report_outcomes()
                now = time.monotonic()
                runner.tick(now)
                if self.failing and now - last_probe >= 1.0:
                    # Nothing may be written to find out the directory recovered (all parked):
                    # a probe file says so, and clears ``failing`` (replay waits for that).
                    last_probe = now
                    self.probe()
                self.thread_error = ""
            except Exception as exc:  # a bug: counted and logged, the thread goes on
                self.thread_error = f"{type(exc).__name__}: {exc}"
                runner.unexpected("engine_round", exc)
                time.sleep(0.1)

    def _report_outcomes(self) -> None:
        runner = self.runner
        outcomes = self._outcomes
        delivered: dict[int, tuple[Delivery, int]] = {}
        n = 0
        while outcomes:
            item, failure, etype, text = outcomes.popleft()
            n += 1
            if item.kind == "new":
                if failure is None:
                    d, k = delivered.get(id(item.owner), (item.owner, 0))
                    delivered[id(item.owner)] = (d, k + 1)
                else:
                    runner.failed(item.owner, item.record, failure, etype, text)
            elif item.kind == "attempt":
                runner.attempt_done(item.owner, failure, etype, text)
            else:
                waiter: _Replay = item.owner
                waiter.results[item.entry_id] = None if failure is None else text
                runner.replayed(item.record.topic, failure, etype, text)
                if len(waiter.results) >= waiter.expected:
                    waiter.done.set()
        if n:
            with self._held_lock:
                self._held -= n
        for d, k in delivered.values():
            d.delivered(k)


def _started(item: Item) -> float:
    """When the record was first handed over (monotonic); a replayed one: now."""
    if item.kind == "new":
        return float(item.owner.started)
    if item.kind == "attempt":
        return float(item.owner.delivery.started)
    return time.monotonic()


def make_dirs(path: Path, mode: int) -> None:
    """Create ``path`` and its missing parents with ``mode`` (whatever the umask)."""
    missing: list[Path] = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode)
        except FileExistsError:
            continue
        os.chmod(d, mode)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _error(exc: OSError) -> tuple[Failure, str, str]:
    code = errno.errorcode.get(exc.errno or 0, "EIO")
    failure = Failure.REJECT if exc.errno in OWN_ERRORS else Failure.RETRY
    return failure, code.lower(), f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")


class _Writer(threading.Thread):
    """Writes the batches of its files, syncs them, rotates them."""

    def __init__(self, service: LocalFileService, index: int) -> None:
        super().__init__(name=f"{service.name}-writer-{index}", daemon=True)
        self.service = service
        self.config = service.config
        self.inbox: queue.SimpleQueue[list[Item] | None] = queue.SimpleQueue()
        self.sync_now = threading.Event()
        self.files: dict[str, _Open] = {}
        #: Written, waiting for the interval's fsync before they are reported delivered.
        self.unsynced: list[Item] = []
        self.unsynced_since = 0.0
        self.dirty: set[str] = set()
        self._last_round = 0.0

    @property
    def syncs_each_batch(self) -> bool:
        return self.config.auto_sync and self.config.sync_interval <= 0

    def run(self) -> None:
        svc = self.service
        while True:
            try:
                batch = self.inbox.get(timeout=ROUND)
            except queue.Empty:
                batch = []
            try:
                if batch is None:
                    self._sync()
                    self._close_all()
                    return
                if batch:
                    self._write(batch)
                self._round(svc.clock())
            except Exception as exc:  # a bug: its records are retried, the thread goes on
                svc.thread_error = f"{type(exc).__name__}: {exc}"
                svc.runner.unexpected("write_failed", exc)
                if batch:
                    svc.report(batch, Failure.RETRY, "unexpected", svc.thread_error)

    def _round(self, now: float) -> None:
        if self.unsynced and (
            self.sync_now.is_set() or time.monotonic() - self.unsynced_since >= self.config.sync_interval
        ):
            self._sync()
        self.sync_now.clear()
        if now - self._last_round < ROUND:
            return
        self._last_round = now
        namer = self.service.namer
        for name, f in list(self.files.items()):
            if namer.timed and namer.name(*f.key, now) != name:
                self._close(name, rotated=True)
            elif now - f.last_write > IDLE_CLOSE:
                self._close(name, rotated=False)

    def _write(self, batch: list[Item]) -> None:
        now = self.service.clock()
        by_name: dict[str, list[Item]] = {}
        for item in batch:
            by_name.setdefault(self.service.namer.name(*item.key, now), []).append(item)
        for name, items in by_name.items():
            self._append(name, items, now)

    def _append(self, name: str, items: list[Item], now: float) -> None:
        svc = self.service
        data = b"".join(i.data for i in items)
        try:
            key = items[0].key
            f = self._open(name, key, now)
            if (
                self.config.rotation.enabled
                and f.size
                and f.size + len(data) > self.config.rotation.max_size_mb << 20
            ):
                self._rotate(name, now)
                f = self._open(name, key, now)
        except OSError as exc:
            self._failed(items, exc)
            return
        start = f.size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(f.fd, view) :]
            if self.syncs_each_batch:
                os.fsync(f.fd)
                svc.syncs += 1
        except OSError as exc:
            try:
                os.ftruncate(f.fd, start)  # what this batch appended goes: it is written again
            except OSError:
                log.warning("could not cut a failed write off %s; its lines may appear twice", name)
            self._close(name, rotated=False)
            self._failed(items, exc)
            return
        f.size += len(data)
        f.last_write = now
        svc.failing = ""
        svc.written += len(items)
        svc.bytes_written += len(data)
        if self.config.auto_sync and not self.syncs_each_batch:
            if not self.unsynced:
                self.unsynced_since = time.monotonic()
            self.unsynced += items
            self.dirty.add(name)
        else:
            svc.report(items, None)

    def _failed(self, items: list[Item], exc: OSError) -> None:
        svc = self.service
        failure, etype, text = _error(exc)
        svc.last_error = text
        if failure is not Failure.RETRY:
            svc.report(items, failure, etype, text)
            return
        svc.failing = text
        if not svc.park_after:
            svc.report(items, failure, etype, text)
            return
        # Records failing for longer than ``timeout`` count as timed out: the engine parks them.
        now = time.monotonic()
        late = [i for i in items if now - _started(i) >= svc.park_after]
        if late:
            svc.report(late, Failure.TIMEOUT, etype, text)
            items = [i for i in items if now - _started(i) < svc.park_after]
        svc.report(items, failure, etype, text)

    def _sync(self) -> None:
        """Sync the files written since the last sync; then their records are delivered."""
        if not self.unsynced:
            return
        items, self.unsynced = self.unsynced, []
        dirty, self.dirty = self.dirty, set()
        try:
            for name in dirty:
                f = self.files.get(name)
                if f is not None:
                    os.fsync(f.fd)
                    self.service.syncs += 1
        except OSError as exc:
            for name in dirty:
                self._close(name, rotated=False)
            self._failed(items, exc)
            return
        self.service.report(items, None)

    def _open(self, name: str, key: tuple[str, str, str], now: float) -> _Open:
        f = self.files.get(name)
        if f is not None:
            return f
        svc = self.service
        path = svc.directory / name
        make_dirs(svc.directory, self.config.dir_permissions)
        with svc.open_lock:
            fd = os.open(
                path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.config.file_permissions
            )
            svc.open_names.add(name)
        try:
            st = os.fstat(fd)
            if st.st_size == 0 and stat.S_ISREG(st.st_mode):
                os.fchmod(fd, self.config.file_permissions)
                if self.config.auto_sync:
                    _fsync_dir(svc.directory)  # the new file's name is on disk with its lines
        except OSError:
            self._forget(name, fd)
            raise
        f = self.files[name] = _Open(fd, st.st_size, key, now)
        return f

    def _forget(self, name: str, fd: int) -> None:
        with contextlib.suppress(OSError):
            os.close(fd)
        with self.service.open_lock:
            self.service.open_names.discard(name)

    def _rotate(self, name: str, now: float) -> None:
        """Rename the full file ``<name>.<time>`` and hand it to the housekeeper."""
        self._sync()
        svc = self.service
        new = rotated_name(name, now)
        os.rename(svc.directory / name, svc.directory / new)
        if self.config.auto_sync:
            _fsync_dir(svc.directory)
        f = self.files.pop(name)
        self._forget(name, f.fd)
        svc.rotations += 1
        if svc._housekeeper is not None:
            svc._housekeeper.closed(new)

    def _close(self, name: str, rotated: bool) -> None:
        if name in self.dirty:
            self._sync()
        f = self.files.pop(name, None)
        if f is None:
            return
        self._forget(name, f.fd)
        if rotated:
            self.service.rotations += 1
            if self.service._housekeeper is not None:
                self.service._housekeeper.closed(name)

    def _close_all(self) -> None:
        for name in list(self.files):
            self._close(name, rotated=False)


class _Housekeeper:
    """Compresses closed files and applies retention, one file at a time, on its own thread (a
    writer never waits for gzip)."""

    def __init__(self, service: LocalFileService) -> None:
        self.service = service
        self.rotation = service.config.rotation
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"{service.name}-housekeeping", daemon=True)
        self._matcher = service.namer.matcher()

    def start(self) -> None:
        # Files rotated by size but not compressed yet when the agent stopped.
        if self.rotation.compress:
            for p in sorted(self.service.directory.iterdir()):
                if is_size_rotated(p.name) and self._matcher.match(p.name):
                    self._queue.put(p.name)
        self._thread.start()

    def closed(self, name: str) -> None:
        self._queue.put(name)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(30.0)

    def _run(self) -> None:
        while True:
            try:
                name = self._queue.get(timeout=HOUSEKEEPING_EVERY)
            except queue.Empty:
                name = ""
            if name is None:
                return
            try:
                if name and self.rotation.compress:
                    self._compress(name)
                self._retain()
            except OSError as exc:
                self.service.last_error = f"housekeeping: {exc}"
                log.warning(
                    "%s: rotated files: %s", self.service.name, exc, extra={"sink": self.service.name}
                )

    def _compress(self, name: str) -> None:
        """``name`` -> ``name.gz`` (written aside, synced, renamed), then ``name`` is removed."""
        d = self.service.directory
        src = d / name
        if not src.exists():
            return
        tmp = d / f".{name}.gz.tmp"
        with open(src, "rb") as fin, open(tmp, "wb") as raw:
            with gzip.GzipFile(
                filename=name, mode="wb", fileobj=raw, compresslevel=zlib.Z_DEFAULT_COMPRESSION
            ) as gz:
                shutil.copyfileobj(fin, gz, 1 << 20)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, self.service.config.file_permissions)
        st = src.stat()
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # its age is its lines' (retention)
        os.rename(tmp, d / f"{name}.gz")
        _fsync_dir(d)
        src.unlink()
        self.service.compressed += 1

    def _retain(self) -> None:
        svc = self.service
        current = svc.namer.current(svc.clock())
        with svc.open_lock:
            closed = [
                (p.name, p.stat().st_mtime)
                for p in svc.directory.iterdir()
                if self._matcher.match(p.name)
                and not current.match(p.name)
                and p.name not in svc.open_names
                and p.is_file()
            ]
            for name in expired(closed, time.time(), self.rotation.max_files, self.rotation.retention_days):
                (svc.directory / name).unlink(missing_ok=True)
                svc.deleted += 1
                log.info("%s: deleted %s (rotation: max_files / retention_days)", svc.name, name)
