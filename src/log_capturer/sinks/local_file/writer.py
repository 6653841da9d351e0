"""The local file sink's writers and housekeeper: what touches the files.

A :class:`Writer` thread owns some of the files (the service gives each record to the writer of
its file): it appends a batch in one ``write``, syncs as ``auto_sync`` / ``sync_interval`` say and
only then reports the records delivered, cuts a failed write off again (``ftruncate``), rotates by
size and by the pattern's time, and closes idle files. The :class:`Housekeeper` thread gzips the
closed files and applies retention, one at a time, so a writer never waits for either.
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from log_capturer.engine.contract import Failure, Record
from log_capturer.sinks.local_file.files import expired, is_size_rotated, rotated_name

if TYPE_CHECKING:
    from log_capturer.sinks.local_file.service import LocalFileService

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


@dataclass
class _Open:
    fd: int
    size: int
    key: tuple[str, str, str]
    last_write: float


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


def cut_torn_line(path: Path, fd: int, size: int, block: int = 65536) -> int:
    """Cut off what follows the last newline of a file about to be appended to, and return its new
    size: a line a killed agent was writing (its record was not acknowledged, so it is written
    again). Appending after it would glue the next record to it and spoil both lines."""
    with open(path, "rb") as r:
        r.seek(size - 1)
        if r.read(1) == b"\n":
            return size
        end = size
        while end > 0:
            start = max(0, end - block)
            r.seek(start)
            data = r.read(end - start)
            nl = data.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            end = start
        else:
            keep = 0
    if keep != size:
        log.warning(
            "local_file: %s ended in a torn line (%d bytes); cut off, its record is written again",
            path,
            size - keep,
        )
        os.ftruncate(fd, keep)
    return keep


def _error(exc: OSError) -> tuple[Failure, str, str]:
    code = errno.errorcode.get(exc.errno or 0, "EIO")
    failure = Failure.REJECT if exc.errno in OWN_ERRORS else Failure.RETRY
    return failure, code.lower(), f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")


class Writer(threading.Thread):
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
            elif stat.S_ISREG(st.st_mode):
                size = cut_torn_line(path, fd, st.st_size)
                st = os.fstat(fd) if size != st.st_size else st
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


class Housekeeper:
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
