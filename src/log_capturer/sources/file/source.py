"""The file source: discovers files, tails them, and checkpoints acknowledged positions.

One thread does discovery (every ``rescan_interval``), reading (whenever a
file grew; idle files are checked every ``poll_interval``) and position
flushing (every ``positions.flush_interval``). Submitting a chunk blocks while
the dispatcher queue is full, which pauses reading: backpressure reaches the
reader instead of buffering more.

Rotation by rename: when the path names a new file, the old descriptor is read
to its end and released only after its lines are acknowledged; the new file
is read from its beginning. Truncation in place is detected by size shrink.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
import time
from collections.abc import Iterator

from log_capturer.config.schema import FilesConfig, PositionsConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.pipeline.dispatcher import Dispatcher, QueueClosed
from log_capturer.record import Chunk, Origin
from log_capturer.sources.file.tail import TailedFile
from log_capturer.sources.positions import PositionStore

log = logging.getLogger(__name__)

#: How long a fully read rotated file is kept open for a writer that still holds it.
ROTATED_GRACE = 5.0


class FileSource:
    name = "file"

    def __init__(
        self,
        config: FilesConfig,
        positions: PositionsConfig,
        dispatcher: Dispatcher,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.positions_config = positions
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.store = PositionStore(positions.directory, "files") if positions.enabled else None
        self._saved: dict[str, dict[str, object]] = self.store.load() if self.store else {}
        self.files: dict[str, TailedFile] = {}
        self.rotated: list[TailedFile] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_scan = True
        self._exclude_dirs = [os.path.abspath(d) for d in config.exclude_directories]
        self.lines_read = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._rescan()
        self._thread = threading.Thread(target=self._run, name="file-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading. Positions are saved by :meth:`save_positions` after the drain."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def close(self) -> None:
        for tf in [*self.files.values(), *self.rotated]:
            tf.close()
        self.files.clear()
        self.rotated.clear()

    # -- discovery -----------------------------------------------------------------------------
    def _matches(self, path: str) -> bool:
        name = os.path.basename(path)
        cfg = self.config
        if not any(fnmatch.fnmatch(name, p) for p in cfg.include_patterns):
            return False
        return not any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in cfg.exclude_patterns)

    def _excluded_dir(self, path: str) -> bool:
        ap = os.path.abspath(path)
        return any(ap == d or ap.startswith(d + os.sep) for d in self._exclude_dirs)

    def discover(self) -> Iterator[str]:
        """Paths of regular files under watch_directories that match the patterns."""
        for root in map(os.path.abspath, self.config.watch_directories):
            if self._excluded_dir(root):
                continue
            if not self.config.recursive:
                try:
                    entries = list(os.scandir(root))
                except OSError:
                    continue
                for e in entries:
                    if e.is_file() and self._matches(e.path):
                        yield e.path
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = [d for d in dirnames if not self._excluded_dir(os.path.join(dirpath, d))]
                for fn in filenames:
                    p = os.path.join(dirpath, fn)
                    if self._matches(p) and os.path.isfile(p):
                        yield p

    def _rescan(self) -> None:
        seen = set()
        for path in self.discover():
            seen.add(path)
            tf = self.files.get(path)
            if tf is not None:
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) != (tf.device, tf.inode):
                    self._retire(tf)
                    self._open(path, new_file=True)
                continue
            self._open(path, new_file=not self._first_scan)
        for path in list(self.files):
            if path not in seen:
                self._retire(self.files[path])
        self._first_scan = False
        self.metrics.files_monitored.set(len(self.files) + len(self.rotated))

    def _retire(self, tf: TailedFile) -> None:
        """The path no longer names this file: finish reading it from the open descriptor."""
        del self.files[tf.path]
        tf.rotated = True
        self.rotated.append(tf)
        log.info("file rotated or removed; reading the old file to its end", extra={"path": tf.path})

    def _open(self, path: str, new_file: bool) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            log.warning("cannot open %s: %s", path, exc.strerror)
            self.metrics.errors.labels("file_source", "open_failed").inc()
            return
        st = os.fstat(fd)
        saved = self._saved.get(path)
        offset = 0
        saved_count = 0
        if saved and saved.get("inode") == st.st_ino and saved.get("device") == st.st_dev:
            off = saved.get("offset", 0)
            offset = off if isinstance(off, int) and 0 <= off <= st.st_size else 0
            cnt = saved.get("log_count", 0)
            saved_count = cnt if isinstance(cnt, int) else 0
        elif not new_file and self.config.read_from == "end":
            offset = st.st_size
        labels = dict(self.config.labels)
        origin = Origin("file", path, labels)
        tf = TailedFile(
            path=path,
            fd=fd,
            device=st.st_dev,
            inode=st.st_ino,
            origin=origin,
            checkpoint=Checkpoint(offset),
            read_offset=offset,
            saved_log_count=saved_count,
            size=st.st_size,
        )
        self.files[path] = tf
        log.info("tailing file", extra={"path": path, "offset": offset})

    # -- reading -------------------------------------------------------------------------------
    def _run(self) -> None:
        cfg = self.config
        next_scan = time.monotonic() + cfg.rescan_interval
        next_flush = time.monotonic() + self.positions_config.flush_interval
        try:
            while not self._stop.is_set():
                busy = False
                for tf in [*self.files.values(), *self.rotated]:
                    if self._stop.is_set():
                        break
                    busy |= self._pump(tf)
                self._release_rotated()
                now = time.monotonic()
                if now >= next_scan:
                    self._rescan()
                    next_scan = now + cfg.rescan_interval
                if now >= next_flush:
                    self.save_positions()
                    next_flush = now + self.positions_config.flush_interval
                if not busy:
                    self._stop.wait(cfg.poll_interval)
        except QueueClosed:
            return
        except Exception:
            log.exception("file source crashed; lines read so far stay checkpointed at their acks")
            self.metrics.errors.labels("file_source", "crash").inc()

    def _pump(self, tf: TailedFile) -> bool:
        """Read one buffer from ``tf`` and submit it. True when bytes were read."""
        cfg = self.config
        try:
            chunk, read = tf.read_chunk(cfg.read_buffer_bytes, cfg.max_line_bytes)
        except OSError as exc:
            log.warning("read failed on %s: %s", tf.path, exc.strerror)
            self.metrics.errors.labels("file_source", "read_failed").inc()
            return False
        if chunk is None:
            return read
        self._submit(tf, chunk)
        return True

    def _submit(self, tf: TailedFile, chunk: Chunk) -> None:
        if chunk.truncated:
            self.metrics.lines_truncated.labels("file").inc(len(chunk.truncated))
        while not self.dispatcher.submit(chunk, tf.checkpoint, timeout=0.25):
            if self._stop.is_set():
                raise QueueClosed
        self.lines_read += len(chunk.lines)

    def _release_rotated(self) -> None:
        now = time.time()
        keep = []
        for tf in self.rotated:
            drained = tf.read_offset >= tf.size and not tf.partial
            if drained and tf.checkpoint.idle and now - tf.last_read > ROTATED_GRACE:
                tf.close()
                log.info("released rotated file", extra={"path": tf.path, "inode": tf.inode})
            else:
                keep.append(tf)
        self.rotated = keep

    # -- positions -----------------------------------------------------------------------------
    def position_entries(self) -> dict[str, dict[str, object]]:
        entries = dict(self._saved)
        for path, tf in self.files.items():
            entries[path] = tf.position_entry()
        return entries

    def save_positions(self) -> None:
        if self.store is None:
            return
        entries = self.position_entries()
        try:
            self.store.save(entries)
        except OSError as exc:
            log.error("cannot save positions to %s: %s", self.store.path, exc)
            self.metrics.errors.labels("positions", "save_failed").inc()
            return
        self._saved = entries

    def lag_bytes(self) -> dict[str, int]:
        return {p: max(0, tf.size - tf.checkpoint.committed) for p, tf in self.files.items()}

    def in_flight(self) -> int:
        return sum(tf.checkpoint.in_flight_lines for tf in [*self.files.values(), *self.rotated])
