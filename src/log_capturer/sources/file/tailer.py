"""The tail engine shared by the file and container sources.

A source says which paths to follow (:meth:`TailEngine.discover`, run every
``rescan_interval``); the engine follows the *files* behind them:

- **Identity.** A followed file is known by device + inode, checked against a
  fingerprint of its first bytes (:mod:`.identity`), never by its path. A
  file renamed to another watched name keeps its position; a new file that
  reuses a deleted file's inode does not inherit it.
- **Rotation by rename (or deletion).** When the path no longer names the
  file, the open descriptor is read to its end, its lines are acknowledged,
  and only then (after ``ROTATED_GRACE`` without growth) is it released.
  Where it was renamed to is looked up by inode in its directory, so its
  position is saved under its new name and a crash while it drains resumes
  it there. Its lines are read before those of the new file at the same path.
- **Copytruncate.** A size shrink, or a changed fingerprint (truncated and
  rewritten past the read offset before the engine looked), means the file
  was truncated. The engine then searches its directory for a file whose
  first bytes carry the old fingerprint and is at least as long as what was
  read (logrotate's copy, ``app.log.1``) and continues there from the read
  offset: the lines written between the last read and the truncation are not
  lost, and the copy is not sent again. A new file whose complete
  fingerprint equals a followed file's is such a copy and is not read from
  its start (it is read normally if it grows).
- **Descriptors.** At most ``max_open_files`` are open. Idle files are closed
  after ``close_inactive`` (or, at the limit, the least recently read live
  file is closed) and watched with ``stat`` on their path; they are reopened
  by identity when they grow. Rotated files keep their descriptor until
  released, since their path no longer leads to them.
- **Positions.** Saved entries are matched to files by identity at start-up;
  entries of rotated files that were still draining are found again by inode
  (or by fingerprint, for a copy) in their directory and resumed.

One thread reads everything; submitting a chunk blocks while the dispatcher
queue is full, so backpressure pauses reading. It runs under a
:class:`~log_capturer.sources.supervise.Supervisor`: after a crash it is
restarted with back-off, and every file reads again from the end of the last
chunk it handed to the dispatcher (:meth:`TailedFile.rewind`), so the lines
of a chunk that was being made or handed over are neither lost nor sent twice.
"""

from __future__ import annotations

import calendar
import logging
import os
import resource
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.pipeline.dispatcher import Dispatcher, QueueClosed
from log_capturer.processing.assembly import Assembler
from log_capturer.record import Chunk, Origin
from log_capturer.sources.file.identity import FINGERPRINT_BYTES, Fingerprint, read_head
from log_capturer.sources.file.tail import TailedFile
from log_capturer.sources.supervise import Supervisor

if TYPE_CHECKING:
    from log_capturer.workers.shard import Shard

log = logging.getLogger(__name__)

#: How long a fully read, acknowledged rotated file is kept open for a writer that still holds it.
ROTATED_GRACE = 5.0
#: Released files remembered per engine (the oldest are forgotten first).
MAX_RELEASED = 1000
#: The first wait after a look that found data; it doubles per idle look up to poll_interval, so a
#: file that is being written is looked at again soon (low latency) and an idle one rarely (low CPU).
ACTIVE_POLL = 0.005

Key = tuple[int, int]
Entry = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """A path a source wants followed, and how to make records from its lines."""

    origin: Origin
    assembler: Callable[[], Assembler | None] | None = None


@dataclass(frozen=True)
class TailSettings:
    poll_interval: float = 0.1
    rescan_interval: float = 5.0
    read_buffer_bytes: int = 1 << 20
    max_line_bytes: int = 1 << 20
    read_from: str = "beginning"
    encoding_errors: str = "backslashreplace"
    max_open_files: int = 256
    close_inactive: float = 300.0


def _utc_ns(value: object) -> int:
    """A saved ``last_read`` (UTC, whole seconds) as ns since the epoch; 0 when absent."""
    if isinstance(value, str):
        try:
            return calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")) * 1_000_000_000
        except ValueError:
            pass
    return 0


def _find_inode(directory: str, key: tuple[int, int]) -> str:
    """The path of the file with identity ``key`` in ``directory`` ('' when there is none)."""
    try:
        with os.scandir(directory) as it:
            for e in it:
                if e.inode() == key[1] and e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    if st.st_dev == key[0]:
                        return e.path
    except OSError:
        pass
    return ""


def _current_path(path: str, key: tuple[int, int]) -> str:
    """Where the file ``key`` last seen at ``path`` is now: there, renamed in its directory, or ''."""
    try:
        st = os.stat(path)
        if (st.st_dev, st.st_ino) == key:
            return path
    except OSError:
        pass
    return _find_inode(os.path.dirname(path), key)


def _open_listed(path: str, ino: int) -> tuple[str, os.stat_result, bytes] | None:
    """(path, stat, first bytes) of the file with inode ``ino`` listed at ``path``: there, or
    wherever it was renamed in the same directory since the listing; None when it is gone."""
    directory = os.path.dirname(path)
    for _ in range(3):  # renamed again while being looked for: look again
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            fd = -1
        try:
            st = os.fstat(fd) if fd >= 0 else os.stat(directory)
            if fd >= 0 and st.st_ino == ino:
                return path, st, os.pread(fd, min(st.st_size, FINGERPRINT_BYTES), 0)
        except OSError:
            return None
        finally:
            if fd >= 0:
                os.close(fd)
        path = _find_inode(directory, (st.st_dev, ino))
        if not path:
            return None
    return None


def _int(entry: Entry, name: str) -> int:
    v = entry.get(name, 0)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


class TailEngine(ABC):
    """Follows the files behind a source's paths; subclasses say which paths (``discover``)."""

    #: The source's name (its /health entry, ``errors_total{component}``, the supervisor's); its
    #: read thread is called the same with a dash (``file-source``).
    name = "tail_source"

    def __init__(
        self,
        settings: TailSettings,
        dispatcher: Dispatcher,
        metrics: Metrics,
        saved: dict[str, Entry] | None = None,
        shard: Shard | None = None,
    ) -> None:
        self.settings = settings
        #: In multi-process mode: which new files this worker takes (None: every file).
        self.shard = shard
        self.max_open_files = settings.max_open_files
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY and self.max_open_files > soft // 2:
            # Leave room for sockets and the other source under the process limit.
            self.max_open_files = max(8, soft // 2)
            log.warning(
                "max_open_files lowered to half the process descriptor limit",
                extra={"configured": settings.max_open_files, "used": self.max_open_files, "ulimit_n": soft},
            )
        self.dispatcher = dispatcher
        self.metrics = metrics
        #: Restarts the read loop after a crash; its state is the source's health.
        self.supervisor = Supervisor(self.name, metrics)
        self.tracked: dict[Key, TailedFile] = {}
        #: Watched path -> the identity it names.
        self.by_path: dict[str, Key] = {}
        self.targets: dict[str, Target] = {}
        #: Copies of followed files (same complete fingerprint) that are not read: key -> (path, size).
        self.copies: dict[Key, tuple[str, int]] = {}
        #: Saved entries not matched to a file yet, by identity.
        self.unclaimed: dict[Key, tuple[str, Entry]] = {}
        for path, entry in (saved or {}).items():
            key = (_int(entry, "device"), _int(entry, "inode"))
            if key != (0, 0):
                self.unclaimed[key] = (path, entry)
        self._open: OrderedDict[Key, TailedFile] = OrderedDict()
        self._fp_index: dict[str, dict[str, Key]] = {}
        self._stop = threading.Event()
        self._rescan_now = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_scan = True
        #: Watched path -> mtime (ns) of the last file followed there, rotated away since: when the
        #: next file appears at the path, the generations between the two are caught up.
        self._rotated_since: dict[str, int] = {}
        self.lines_read = 0
        #: Lines acknowledged from files no longer followed, per source id.
        self.released_lines: Counter[str] = Counter()
        #: Rotated files read to their end, acknowledged and released, that are still on disk:
        #: saved as ``state: released`` so that a restart knows them as read (and does not
        #: catch them up as generations rotated away unseen). Dropped once the file is gone.
        self.released: dict[Key, Entry] = {}

    # -- what subclasses provide -----------------------------------------------------------------
    @abstractmethod
    def discover(self) -> dict[str, Target]:
        """Every path to follow now, with its target."""

    @abstractmethod
    def save_positions(self) -> None:
        """Write acknowledged positions (each source owns its positions file and format)."""

    @abstractmethod
    def flush_interval(self) -> float:
        """Seconds between two position saves."""

    def target_for(self, path: str) -> Target | None:
        """The target for ``path`` if it is a path to follow (a renamed file's new name)."""
        return self.targets.get(path)

    def target_for_source(self, source_id: str) -> Target | None:
        """The target whose records carry ``source_id`` (to resume a rotated file after a restart)."""
        for t in self.targets.values():
            if t.origin.source_id == source_id:
                return t
        return None

    @abstractmethod
    def update_gauges(self) -> None:
        """Set the source's gauges after a rescan."""

    def reads_rotated_when_new(self, target: Target) -> bool:
        """Whether the rotated generations next to a path seen for the first time after start-up
        are read too (a new container's log: all of it was written since it started)."""
        return False

    def read_from_end(self, target: Target) -> bool:
        """Whether a file found at start-up with no saved position starts at its end."""
        return self.settings.read_from == "end"

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self.rescan()
        except Exception as exc:
            self.supervisor.crashed(exc, "discovery is tried again by the read loop")
            self._rescan_now.set()
        self._thread = threading.Thread(target=self._run, name=self.name.replace("_", "-"), daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop reading. Nothing is buffered here (what is not read stays in the files), so the
        read thread is given 30 s to end whatever ``timeout`` says; positions are saved by
        :meth:`finish`, after the drain."""
        self._stop.set()
        self._rescan_now.set()
        if self._thread is not None:
            self._thread.join(30)

    def finish(self) -> None:
        """After the drain: save the acknowledged positions, close the files."""
        self.save_positions()
        self.close()

    def close(self) -> None:
        for tf in list(self.tracked.values()):
            tf.close()
        self._open.clear()

    def request_rescan(self) -> None:
        """Run discovery at the next loop turn (e.g. a container started)."""
        self._rescan_now.set()

    # -- the loop ----------------------------------------------------------------------------------
    def _run(self) -> None:
        self.supervisor.run(self._loop, self._stop, self.rewind)

    def _loop(self) -> None:
        s = self.settings
        next_scan = time.monotonic() + s.rescan_interval
        next_flush = time.monotonic() + self.flush_interval()
        idle_wait = s.poll_interval
        while not self._stop.is_set():
            busy = self.pump_all(time.monotonic())
            now = time.monotonic()
            if now >= next_scan or self._rescan_now.is_set():
                self._rescan_now.clear()
                self.rescan()
                next_scan = now + s.rescan_interval
            if now >= next_flush:
                self.save_positions()
                next_flush = now + self.flush_interval()
            self.supervisor.ok()
            if busy:
                idle_wait = min(ACTIVE_POLL, s.poll_interval)
            else:
                self._rescan_now.wait(idle_wait)
                idle_wait = min(idle_wait * 2, s.poll_interval)

    def rewind(self) -> None:
        """Before a restart: every file reads again from the end of its last chunk handed over."""
        for tf in list(self.tracked.values()):
            tf.rewind()

    def health(self) -> dict[str, Any]:
        """The read loop's state for ``/health`` (see :meth:`Supervisor.health`)."""
        return self.supervisor.health()

    def pump_all(self, now: float) -> bool:
        """Read once from every file with new data. True when bytes were read."""
        busy = False
        files = list(self.tracked.values())
        draining: set[str] = set()
        for tf in files:
            # Rotated files first, one at a time per stream, oldest first: lines keep their order.
            if not tf.live and tf.origin.source_id not in draining:
                busy |= self._pump(tf, now)
                if tf.unread or tf.partial:
                    draining.add(tf.origin.source_id)
        for tf in files:
            if self._stop.is_set():
                break
            if tf.live and tf.origin.source_id not in draining and self.tracked.get(tf.key) is tf:
                busy |= self._pump(tf, now)
        for tf in files:
            asm = tf.assembler
            if asm is not None and asm.held and asm.due(now):
                chunk = tf.flush_assembler()
                if chunk is not None:
                    self._submit(tf, chunk)
        self._release_rotated(now)
        self._close_inactive(now)
        return busy

    def _pump(self, tf: TailedFile, now: float) -> bool:
        """Read one buffer from ``tf`` and submit it. True when bytes were read."""
        s = self.settings
        if tf.fd is None:
            try:
                st = os.stat(tf.path) if tf.path else None
            except OSError:
                st = None
            if st is None or (st.st_dev, st.st_ino) != tf.key:
                if tf.live:
                    self._lost_path(tf)
                else:  # a rotated file not opened yet was renamed again
                    tf.path = self._locate(tf)
                    if not tf.path:
                        self._forget(tf)
                return False
            if st.st_size == tf.read_offset:
                tf.size = st.st_size
                return False
            if not self._reopen(tf, now):
                return False
        assert tf.fd is not None
        try:
            st = os.fstat(tf.fd)
            size = st.st_size
            fp = tf.fingerprint.refresh(tf.fd, size) if size != tf.read_offset else tf.fingerprint
        except OSError as exc:
            log.warning("cannot read %s: %s", tf.path, exc.strerror)
            self.metrics.errors.labels(self.name, "read_failed").inc()
            return False
        if size < tf.read_offset or fp is None:
            self._truncated(tf, size, now)
            tf.mtime_ns = st.st_mtime_ns
            return True
        tf.fingerprint = fp
        tf.size = size
        tf.mtime_ns = st.st_mtime_ns
        if size == tf.read_offset:
            return False
        try:
            chunk, read = tf.read_chunk(s.read_buffer_bytes, s.max_line_bytes, now)
        except OSError as exc:
            log.warning("read failed on %s: %s", tf.path, exc.strerror)
            self.metrics.errors.labels(self.name, "read_failed").inc()
            return False
        if tf.key in self._open:
            self._open.move_to_end(tf.key)
        if chunk is not None:
            self._submit(tf, chunk)
        return read

    def _submit(self, tf: TailedFile, chunk: Chunk) -> None:
        if chunk.truncated:
            self.metrics.lines_truncated.labels(chunk.origin.source_type).inc(len(chunk.truncated))
        while not self.dispatcher.submit(chunk, tf.checkpoint, timeout=0.25):
            if self._stop.is_set():
                raise QueueClosed
        tf.mark_handed_over(chunk)
        self.lines_read += len(chunk.lines)

    # -- descriptors -------------------------------------------------------------------------------
    def _open_fd(self, path: str, keep: Key | None = None) -> int | None:
        """Open ``path``, first closing the least recently read live file (not ``keep``) at the limit."""
        if len(self._open) >= self.max_open_files:
            victim = next((t for t in self._open.values() if t.live and t.key != keep), None)
            if victim is None:
                return None
            self._close(victim)
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            log.warning("cannot open %s: %s", path, exc.strerror)
            self.metrics.errors.labels(self.name, "open_failed").inc()
            return None

    def _adopt_fd(self, tf: TailedFile, fd: int, now: float) -> None:
        tf.fd = fd
        tf.last_active = now
        self._open[tf.key] = tf

    def _close(self, tf: TailedFile) -> None:
        tf.close()
        self._open.pop(tf.key, None)

    def _reopen(self, tf: TailedFile, now: float) -> bool:
        fd = self._open_fd(tf.path)
        if fd is None:
            return False
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != tf.key:
            os.close(fd)
            self._lost_path(tf)
            return False
        self._adopt_fd(tf, fd, now)
        return True

    def _close_inactive(self, now: float) -> None:
        limit = self.settings.close_inactive
        for tf in list(self._open.values()):
            if now - tf.last_active < limit:
                break  # ordered by last read: the rest are more recent
            if tf.live and not tf.unread and not tf.partial:
                self._close(tf)

    @property
    def open_files(self) -> int:
        return len(self._open)

    # -- rotation, truncation ------------------------------------------------------------------------
    def _forget(self, tf: TailedFile) -> None:
        self.released_lines[tf.origin.source_id] += tf.saved_log_count + tf.checkpoint.acked_lines
        self._close(tf)
        if self.tracked.get(tf.key) is tf:
            del self.tracked[tf.key]
        if tf.live and self.by_path.get(tf.path) == tf.key:
            del self.by_path[tf.path]

    def _locate(self, tf: TailedFile) -> str:
        """Where ``tf`` is now, found by inode in its last directory ('' when gone)."""
        return _find_inode(os.path.dirname(tf.path), tf.key)

    def _lost_path(self, tf: TailedFile) -> None:
        """``tf``'s path no longer names it: renamed (rotation) or deleted."""
        old = tf.path
        new = self._locate(tf) if old else ""
        if self.by_path.get(old) == tf.key:
            del self.by_path[old]
        if new and self.target_for(new) is not None:
            # Renamed to another watched name: the same file, followed under its new name.
            tf.path = new
            tf.live = True
            self.by_path[new] = tf.key
            return
        if tf.fd is None and new:
            fd = self._open_fd(new)
            if fd is not None:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == tf.key and tf.fingerprint.matches(fd):
                    self._adopt_fd(tf, fd, time.monotonic())
                else:
                    os.close(fd)
        tf.path = new
        if old:
            self._rotated_since.pop(old, None)
            self._rotated_since[old] = tf.mtime_ns
            while len(self._rotated_since) > MAX_RELEASED:  # paths that never came back
                del self._rotated_since[next(iter(self._rotated_since))]
        if tf.fd is None:
            log.info("file removed", extra={"path": old})
            self._forget(tf)
            return
        tf.live = False
        log.info(
            "file rotated; reading the old file to its end",
            extra={"path": tf.origin.source_id, "rotated_to": new or "(deleted)", "inode": tf.inode},
        )
        self._catch_up(old, tf.origin, tf.mtime_ns)

    def _truncated(self, tf: TailedFile, size: int, now: float) -> None:
        """The file shrank (or its first bytes changed): copytruncate or truncation in place."""
        assert tf.fd is not None
        copy = self._find_copy(tf)
        target = self.target_for(tf.path) if tf.live else None
        if copy is not None:
            cpath, cfd = copy
            st = os.fstat(cfd)
            fresh = TailedFile(
                path=tf.path,
                device=tf.device,
                inode=tf.inode,
                fingerprint=Fingerprint.of(tf.fd, size),
                origin=tf.origin,
                checkpoint=Checkpoint(0),
                fd=tf.fd,
                live=tf.live,
                assembler=self._new_assembler(target),
                encoding_errors=tf.encoding_errors,
                size=size,
            )
            self._open.pop(tf.key, None)
            old_key = tf.key
            # The old content continues in the copy, with its checkpoint and in-flight lines.
            tf.fd = None
            tf.device, tf.inode = st.st_dev, st.st_ino
            tf.path = cpath
            tf.live = self.target_for(cpath) is not None
            tf.size = st.st_size
            self.copies.pop(tf.key, None)
            # Rotated files are read in this order: the copy (the older lines) where the file
            # was, then its new content. (A new dict: other threads may be iterating the old one.)
            order: dict[Key, TailedFile] = {}
            for key, other in self.tracked.items():
                if key == old_key:
                    order[tf.key] = tf
                    order[fresh.key] = fresh
                elif key != tf.key:
                    order[key] = other
            order.setdefault(tf.key, tf)
            order.setdefault(fresh.key, fresh)
            self.tracked = order
            self._open[fresh.key] = fresh
            self._adopt_fd(tf, cfd, now)
            if tf.live:
                self.by_path[cpath] = tf.key
            log.info(
                "file truncated (copytruncate); continuing the old content in its copy",
                extra={"path": fresh.path, "copy": cpath, "offset": tf.read_offset},
            )
            self.publish_claims()  # the old content now has the copy's identity
            if fresh.live:
                self._catch_up(fresh.path, tf.origin, tf.mtime_ns)
            return
        unread = max(0, tf.size - tf.read_offset)
        if unread:
            self.metrics.errors.labels(self.name, "truncated_unread").inc()
        log.warning(
            "file truncated; reading it again from the start",
            extra={"path": tf.path, "unread_bytes_lost": unread},
        )
        chunk = tf.flush_assembler()
        if chunk is not None:
            self._submit(tf, chunk)
        tf.restart_at(0, Checkpoint(0))
        tf.fingerprint = Fingerprint.of(tf.fd, size)
        tf.size = size
        if tf.live:
            self._catch_up(tf.path, tf.origin, tf.mtime_ns)

    def rotated_name_ok(self, path: str) -> bool:
        """Whether a rotated file at ``path`` can be read (not compressed)."""
        return not path.endswith((".gz", ".zip", ".bz2", ".xz", ".zst", ".lz4"))

    def _catch_up(
        self, live_path: str, origin: Origin, since_ns: int, known: set[Key] | frozenset[Key] = frozenset()
    ) -> None:
        """Rotated generations of ``live_path`` that were never seen (rotated away between two looks).

        Candidates are untracked files next to it whose name starts with its
        name (app.log.1, app.log-20260101, 0.log.20260101-120000), that no
        watched pattern covers, are not compressed, were modified at or after
        ``since_ns`` (the last write seen on the file they followed) and are not
        a copy of a followed file. They are read from their start, oldest first.
        """
        if not live_path or not since_ns:
            return
        directory, base = os.path.split(live_path)
        target = self.target_for(live_path) or self.target_for_source(origin.source_id)
        if target is None:
            return
        copies = {t.fingerprint.digest for t in self.tracked.values() if t.fingerprint.complete}
        found: dict[Key, tuple[int, str, os.stat_result, Fingerprint]] = {}
        # A listing made while files are renamed may miss one (readdir does not promise to return
        # an entry renamed during it): list again until a listing finds nothing new.
        for _ in range(5):
            before = len(found)
            if not self._list_generations(directory, base, since_ns, known, copies, found):
                return
            if len(found) == before:
                break
        for _, path, st, fp in sorted(found.values(), key=lambda f: (f[0], f[1])):
            tf = TailedFile(
                path=path,
                device=st.st_dev,
                inode=st.st_ino,
                fingerprint=fp,
                origin=origin,
                checkpoint=Checkpoint(0),
                live=False,
                live_path=live_path,
                assembler=self._new_assembler(target),
                encoding_errors=self.settings.encoding_errors,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
            )
            self.tracked[tf.key] = tf
            log.info(
                "found a rotated file never read (rotated away between two looks); reading it",
                extra={"path": path, "source_id": origin.source_id, "bytes": st.st_size},
            )

    def _list_generations(
        self,
        directory: str,
        base: str,
        since_ns: int,
        known: set[Key] | frozenset[Key],
        copies: set[str],
        found: dict[Key, tuple[int, str, os.stat_result, Fingerprint]],
    ) -> bool:
        """One listing for :meth:`_catch_up`: adds the untracked generations of ``base`` modified
        at or after ``since_ns`` to ``found``. False when the directory cannot be listed."""
        try:
            with os.scandir(directory) as it:
                # The inode comes from the listing: the name may name another file by the time it
                # is opened (Docker renames every generation at each rotation).
                names = [
                    (e.path, e.inode())
                    for e in it
                    if e.name.startswith(base) and e.name != base and e.is_file(follow_symlinks=False)
                ]
        except OSError:
            return False
        for listed, ino in names:
            opened = _open_listed(listed, ino)
            if opened is None:
                continue  # deleted since the listing
            path, st, data = opened
            if self.target_for(path) is not None or not self.rotated_name_ok(path):
                continue
            key = (st.st_dev, st.st_ino)
            if (
                key in found
                or key in self.tracked
                or key in self.unclaimed
                or key in self.copies
                or key in self.released  # read to its end already, renamed again since
                or key in known
            ):
                continue
            fp = Fingerprint.of_head(data)
            if st.st_mtime_ns < since_ns or fp.digest in copies:
                continue
            found[key] = (st.st_mtime_ns, path, st, fp)
        return True

    def _find_copy(self, tf: TailedFile) -> tuple[str, int] | None:
        """A file in ``tf``'s directory holding its old content: same fingerprint, long enough."""
        if tf.fingerprint.length == 0 or not tf.path:
            return None
        directory = os.path.dirname(tf.path)
        try:
            with os.scandir(directory) as it:
                names = [e.path for e in it if e.is_file(follow_symlinks=False)]
        except OSError:
            return None
        names.sort(key=lambda p: (not os.path.basename(p).startswith(os.path.basename(tf.path)), p))
        for path in names:
            head = read_head(path)
            if head is None:
                continue
            dev, ino, size, data = head
            key = (dev, ino)
            if key == tf.key or (key in self.tracked and key not in self.copies):
                continue
            if size >= tf.read_offset and tf.fingerprint.matches_prefix(data):
                fd = self._open_fd(path, keep=tf.key)
                if fd is None:
                    return None
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == key:
                    return path, fd
                os.close(fd)
        return None

    def refresh_rotated_paths(self) -> None:
        """Find rotated files renamed again (app.log.1 -> app.log.2) so their positions keep their name."""
        for tf in list(self.tracked.values()):
            if not tf.live and tf.path:
                tf.path = _current_path(tf.path, tf.key)

    def _release_rotated(self, now: float) -> None:
        for tf in list(self.tracked.values()):
            if tf.live or not tf.settled or now - tf.last_active < ROTATED_GRACE:
                continue
            log.info("released rotated file", extra={"path": tf.path or tf.origin.source_id})
            if tf.path:
                self._remember_released(tf.key, tf.path, tf.position_entry())
            self._forget(tf)

    def _remember_released(self, key: Key, path: str, entry: Entry) -> None:
        self.released.pop(key, None)
        self.released[key] = {**entry, "path": path, "state": "released"}
        while len(self.released) > MAX_RELEASED:
            del self.released[next(iter(self.released))]

    def refresh_released(self) -> None:
        """Follow released files renamed again (app.log.2 -> app.log.3); forget the deleted ones."""
        for key, entry in list(self.released.items()):
            path = _current_path(str(entry["path"]), key)
            if path:
                entry["path"] = path
            else:
                del self.released[key]

    # -- discovery ---------------------------------------------------------------------------------
    def rescan(self) -> None:
        targets = self.discover()
        self.targets = targets
        seen: dict[Key, str] = {}
        # Paths naming files not followed yet, with what the scan saw there.
        fresh: list[tuple[str, Target, bool, os.stat_result]] = []
        for path, target in targets.items():
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue  # a hard link or symlink to a file already followed
            seen[key] = path
            tf = self.tracked.get(key)
            if tf is not None:
                if tf.path != path or not tf.live:
                    if tf.live and self.by_path.get(tf.path) == key:
                        del self.by_path[tf.path]
                    tf.path = path
                    tf.live = True
                self.by_path[path] = key
                continue
            if (
                self.shard is not None
                and key not in self.unclaimed
                and not self.shard.admits(target.origin.source_id, key, path)
            ):
                continue  # another worker's file
            grown_copy = key in self.copies
            if grown_copy:
                if st.st_size == self.copies[key][1]:
                    continue
                del self.copies[key]  # a "copy" that grows is a log of its own
            fresh.append((path, target, not grown_copy, st))
        for key, tf in list(self.tracked.items()):
            if tf.live and key not in seen:
                self._lost_path(tf)
        self.refresh_rotated_paths()
        if self.released:
            self.refresh_released()
        self._fp_index.clear()
        for path, target, may_be_copy, st in fresh:
            self._new_file(path, target, may_be_copy, st)
        for key in [k for k, (p, _) in self.copies.items() if k not in seen]:
            del self.copies[key]
        if self.unclaimed:
            self._resume_unclaimed()
        self._first_scan = False
        self.update_gauges()
        self.publish_claims()

    def publish_claims(self) -> None:
        """In multi-process mode, tell the other workers which files this one follows."""
        if self.shard is not None:
            self.shard.publish(self.tracked)

    def _new_assembler(self, target: Target | None) -> Assembler | None:
        return target.assembler() if target is not None and target.assembler is not None else None

    def _complete_fingerprints(self, directory: str) -> dict[str, Key]:
        """Complete fingerprints of the followed files in ``directory`` (built once per rescan)."""
        index = self._fp_index.get(directory)
        if index is None:
            index = self._fp_index[directory] = {
                tf.fingerprint.digest: tf.key
                for tf in self.tracked.values()
                if tf.fingerprint.complete and os.path.dirname(tf.path) == directory
            }
        return index

    def _new_file(
        self, path: str, target: Target, may_be_copy: bool = True, seen: os.stat_result | None = None
    ) -> None:
        now = time.monotonic()
        fd = self._open_fd(path)
        if fd is None:
            return
        try:
            st = os.fstat(fd)
            head = os.pread(fd, min(st.st_size, FINGERPRINT_BYTES), 0)
        except OSError:
            os.close(fd)
            return
        key = (st.st_dev, st.st_ino)
        fp = Fingerprint.of_head(head)
        offset, log_count = 0, 0
        claimed = self.unclaimed.get(key)
        if claimed is not None and self._entry_matches(claimed[1], head, st.st_size):
            del self.unclaimed[key]
            offset, log_count = _int(claimed[1], "offset"), _int(claimed[1], "log_count")
            if offset > st.st_size:
                offset, log_count = 0, 0
        else:
            if (
                claimed is not None
                and self.shard is not None
                and not self.shard.admits(target.origin.source_id, key, path)
            ):
                os.close(fd)  # a reused inode, not the saved file: the worker of its path takes it
                return
            directory = os.path.dirname(path)
            if may_be_copy and fp.complete and fp.digest in self._complete_fingerprints(directory):
                # A copy of a followed file (copytruncate's copy made before the truncation).
                os.close(fd)
                self.copies[key] = (path, st.st_size)
                return
            if self._first_scan and claimed is None and self.read_from_end(target):
                offset = st.st_size
        tf = TailedFile(
            path=path,
            device=st.st_dev,
            inode=st.st_ino,
            fingerprint=fp,
            origin=target.origin,
            checkpoint=Checkpoint(offset),
            read_offset=offset,
            assembler=self._new_assembler(target),
            encoding_errors=self.settings.encoding_errors,
            saved_log_count=log_count,
            size=st.st_size,
            # Known from the start: if it is rotated away before its first read, the generations
            # after it are caught up from this time on (0 would skip the catch-up).
            mtime_ns=st.st_mtime_ns,
        )
        self.tracked[key] = tf
        self.by_path[path] = key
        if fp.complete:
            self._complete_fingerprints(os.path.dirname(path))[fp.digest] = key
        self._adopt_fd(tf, fd, now)
        log.info("following file", extra={"path": path, "offset": offset})
        since = self._rotated_since.pop(path, 0)
        if not since and claimed is None and self.reads_rotated_when_new(target):
            since = 1  # every generation there
        if seen is not None and (seen.st_dev, seen.st_ino) != key:
            # The scan saw another file here, rotated away before this open (Docker at full
            # speed): it and any generation after it were rotated away unseen.
            since = min(since or seen.st_mtime_ns, seen.st_mtime_ns)
        if since and not self._first_scan:  # at start-up, rotated files found are history
            # Generations made and rotated away since the last file followed at this path.
            self._catch_up(path, target.origin, since)

    @staticmethod
    def _entry_matches(entry: Entry, head: bytes, size: int) -> bool:
        """A saved entry describes this file: its fingerprint matches (format 1: size fits)."""
        fp = Fingerprint.from_entry(entry)
        if fp is None:
            return "fingerprint" not in entry and _int(entry, "offset") <= size
        return fp.matches_prefix(head)

    def _resume_unclaimed(self) -> None:
        """Find saved files that no watched path names (rotated while draining, or copies).

        Rotated generations made while the agent was stopped and never read are
        then caught up (see :meth:`_catch_up`).
        """
        catch_up: list[tuple[str, Origin, int]] = []
        done: set[Key] = set()  # saved files found fully read: never caught up as unread
        for key, (path, entry) in list(self.unclaimed.items()):
            directory = os.path.dirname(path)
            if not os.path.isdir(directory):
                continue  # maybe not mounted yet: keep the entry
            del self.unclaimed[key]
            source_id = str(entry["source_id"]) if isinstance(entry.get("source_id"), str) else path
            live_path = str(entry["live_path"]) if isinstance(entry.get("live_path"), str) else path
            found = self._find_entry(key, path, entry)
            if found is None:
                log.info("saved position of a file that no longer exists dropped", extra={"path": path})
                target = self.target_for(live_path) or self.target_for_source(source_id)
                if target is not None:
                    catch_up.append((live_path, target.origin, _utc_ns(entry.get("last_read"))))
                continue
            fpath, fd, st = found
            done.add((st.st_dev, st.st_ino))
            offset = _int(entry, "offset")
            target = self.target_for(fpath) or self.target_for_source(source_id)
            if (st.st_dev, st.st_ino) in self.tracked or offset > st.st_size or target is None:
                os.close(fd)
                continue
            live = self.target_for(fpath) is not None
            if not live:
                catch_up.append((live_path, target.origin, st.st_mtime_ns))
                if offset >= st.st_size:
                    os.close(fd)
                    self._remember_released((st.st_dev, st.st_ino), fpath, entry)
                    continue
            fp = Fingerprint.from_entry(entry) or Fingerprint.of(fd, st.st_size)
            tf = TailedFile(
                path=fpath,
                device=st.st_dev,
                inode=st.st_ino,
                fingerprint=fp,
                origin=target.origin,
                checkpoint=Checkpoint(offset),
                read_offset=offset,
                live=live,
                live_path=live_path,
                assembler=self._new_assembler(target),
                encoding_errors=self.settings.encoding_errors,
                saved_log_count=_int(entry, "log_count"),
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
            )
            self.tracked[tf.key] = tf
            self._adopt_fd(tf, fd, time.monotonic())
            if live:
                self.by_path[fpath] = tf.key
            log.info(
                "resuming a rotated file from its saved position",
                extra={"path": fpath, "source_id": tf.origin.source_id, "offset": offset},
            )
        for live_path, origin, since in sorted(catch_up, key=lambda c: c[2]):
            self._catch_up(live_path, origin, since, done)

    def _find_entry(self, key: Key, path: str, entry: Entry) -> tuple[str, int, os.stat_result] | None:
        """The file a saved entry describes: at its path, renamed in its directory, or a copy of it."""
        fp = Fingerprint.from_entry(entry)
        offset = _int(entry, "offset")
        directory = os.path.dirname(path)
        try:
            with os.scandir(directory) as it:
                files = [e for e in it if e.is_file(follow_symlinks=False)]
        except OSError:
            return None
        same_inode = [e.path for e in files if e.inode() == key[1]]
        others = sorted(e.path for e in files if e.inode() != key[1])
        for candidate, need_same in [(p, True) for p in same_inode] + [(p, False) for p in others]:
            if not need_same and fp is None:
                break
            head = read_head(candidate)
            if head is None:
                continue
            dev, ino, size, data = head
            if need_same and (dev, ino) != key:
                continue
            if (dev, ino) in self.tracked or size < offset:
                continue
            if not self._entry_matches(entry, data, size):
                continue
            fd = self._open_fd(candidate)
            if fd is None:
                return None
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == (dev, ino):
                return candidate, fd, st
            os.close(fd)
        return None

    # -- reporting ---------------------------------------------------------------------------------
    def position_entries(self) -> dict[str, Entry]:
        """Acknowledged positions by current path, plus saved entries not matched yet."""
        entries: dict[str, Entry] = dict(list(self.unclaimed.values()))
        for key, entry in list(self.released.items()):
            if key in self.tracked:
                continue  # followed again (it grew): its own entry says where
            saved = dict(entry)
            entries[str(saved.pop("path"))] = saved
        files = list(self.tracked.values())
        for tf in files:
            if tf.path and not tf.live:
                entries[tf.path] = tf.position_entry()
        for tf in files:
            if tf.path and tf.live:
                entries[tf.path] = tf.position_entry()
        return entries

    def files(self, live: bool = True) -> list[TailedFile]:
        return [tf for tf in list(self.tracked.values()) if tf.live is live]

    def lag_bytes(self) -> dict[str, int]:
        return {tf.path: max(0, tf.size - tf.checkpoint.committed) for tf in self.files()}

    def in_flight(self) -> int:
        return sum(tf.checkpoint.in_flight_lines for tf in list(self.tracked.values()))
