"""Rotation: what happens to a followed file when its path stops naming it, or it shrinks.

- **Rename or deletion** (:meth:`Rotation.lost_path`). Where the file went is
  looked up by inode in its directory. Renamed to another watched name, it is
  the same file followed under its new name. Otherwise it becomes a *rotated*
  file: read to its end through the descriptor it has, its position saved
  under its new name (so a crash while it drains resumes it there), its lines
  read before those of the new file at the same path; generations rotated away
  before the tailer looked are caught up (:mod:`.catchup`). A deleted file
  with no open descriptor is forgotten.
- **Truncation** (:meth:`Rotation.truncated`): a size below the read offset,
  or a changed fingerprint (truncated and rewritten past the read offset
  before the tailer looked). The file's directory is searched for a file whose
  first bytes carry the old fingerprint and that is at least as long as what
  was read (logrotate's ``copytruncate`` copy, ``app.log.1``): the old content
  continues there from the read offset, with its checkpoint and in-flight
  lines, and the truncated file is read from its start as a new file. Without
  a copy the file is read again from its start, and the bytes that were never
  read are counted (``errors_total{error_type="truncated_unread"}``).
- **Release** (:meth:`Rotation.release_rotated`). A rotated file fully read,
  emitted and acknowledged, that did not grow for ``ROTATED_GRACE`` seconds
  (a writer may still hold it), is closed and forgotten; the checkpointer
  remembers it as released while it is on disk.

Everything runs on the tailer's read thread.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from log_capturer.observability.metrics import Metrics
from log_capturer.record import Chunk
from log_capturer.sources.file.catchup import CatchUp
from log_capturer.sources.file.checkpointer import MAX_RELEASED, Checkpointer
from log_capturer.sources.file.descriptors import DescriptorCache
from log_capturer.sources.file.followed import FollowedFiles
from log_capturer.sources.file.identity import Fingerprint, current_path, find_inode, read_head
from log_capturer.sources.file.paths import PathsProvider
from log_capturer.sources.file.tail import TailedFile

log = logging.getLogger(__name__)

#: How long a fully read, acknowledged rotated file is kept open for a writer that still holds it.
ROTATED_GRACE = 5.0


class Rotation:
    def __init__(
        self,
        followed: FollowedFiles,
        paths: PathsProvider,
        descriptors: DescriptorCache,
        checkpointer: Checkpointer,
        catch_up: CatchUp,
        submit: Callable[[TailedFile, Chunk], None],
        claims_changed: Callable[[], None],
        metrics: Metrics,
        component: str,
    ) -> None:
        self.followed = followed
        self.paths = paths
        self.descriptors = descriptors
        self.checkpointer = checkpointer
        self.catch_up = catch_up
        #: Hands a chunk to the dispatcher (what an assembler held when a file is truncated).
        self.submit = submit
        #: Called when a followed file changes identity (multi-process mode publishes its claims).
        self.claims_changed = claims_changed
        self.metrics = metrics
        self.component = component
        #: Watched path -> mtime (ns) of the last file followed there, rotated away since: when the
        #: next file appears at the path, the generations between the two are caught up.
        self.rotated_since: dict[str, int] = {}

    def forget(self, tf: TailedFile) -> None:
        """Stop following ``tf`` and close it; its acknowledged lines still count for its source."""
        self.checkpointer.released_file(tf)
        self.descriptors.close(tf)
        self.followed.remove(tf)

    def locate(self, tf: TailedFile) -> str:
        """Where ``tf`` is now, found by inode in its last directory ('' when gone)."""
        return find_inode(os.path.dirname(tf.path), tf.key)

    def lost_path(self, tf: TailedFile) -> None:
        """``tf``'s path no longer names it: renamed (rotation) or deleted."""
        old = tf.path
        new = self.locate(tf) if old else ""
        self.followed.unlink_path(tf)
        if new and self.paths.target_for(new) is not None:
            # Renamed to another watched name: the same file, followed under its new name.
            tf.path = new
            tf.live = True
            self.followed.by_path[new] = tf.key
            return
        if tf.fd is None and new:
            fd = self.descriptors.open(new)
            if fd is not None:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == tf.key and tf.fingerprint.matches(fd):
                    self.descriptors.adopt(tf, fd, time.monotonic())
                else:
                    os.close(fd)
        tf.path = new
        if old:
            self.rotated_since.pop(old, None)
            self.rotated_since[old] = tf.mtime_ns
            while len(self.rotated_since) > MAX_RELEASED:  # paths that never came back
                del self.rotated_since[next(iter(self.rotated_since))]
        if tf.fd is None:
            log.info("file removed", extra={"path": old})
            self.forget(tf)
            return
        tf.live = False
        log.info(
            "file rotated; reading the old file to its end",
            extra={"path": tf.origin.source_id, "rotated_to": new or "(deleted)", "inode": tf.inode},
        )
        self.catch_up.generations(old, tf.origin, tf.mtime_ns)

    def truncated(self, tf: TailedFile, size: int, now: float) -> None:
        """The file shrank to ``size`` (or its first bytes changed): copytruncate or truncation in place."""
        assert tf.fd is not None
        copy = self._find_copy(tf)
        if copy is not None:
            self._continue_in_copy(tf, size, now, *copy)
            return
        unread = max(0, tf.size - tf.read_offset)
        if unread:
            self.metrics.errors.labels(self.component, "truncated_unread").inc()
        log.warning(
            "file truncated; reading it again from the start",
            extra={"path": tf.path, "unread_bytes_lost": unread},
        )
        chunk = tf.flush_assembler()
        if chunk is not None:
            self.submit(tf, chunk)
        tf.restart_at(0, self.checkpointer.checkpoint(0))
        tf.fingerprint = Fingerprint.of(tf.fd, size)
        tf.size = size
        if tf.live:
            self.catch_up.generations(tf.path, tf.origin, tf.mtime_ns)

    def _continue_in_copy(self, tf: TailedFile, size: int, now: float, cpath: str, cfd: int) -> None:
        """The old content of ``tf`` continues in its copy ``cpath``; ``tf``'s own descriptor now
        reads the truncated file's new content as a new file."""
        assert tf.fd is not None
        target = self.paths.target_for(tf.path) if tf.live else None
        st = os.fstat(cfd)
        fresh = TailedFile(
            path=tf.path,
            device=tf.device,
            inode=tf.inode,
            fingerprint=Fingerprint.of(tf.fd, size),
            origin=tf.origin,
            checkpoint=self.checkpointer.checkpoint(0),
            fd=tf.fd,
            live=tf.live,
            assembler=target.new_assembler() if target is not None else None,
            encoding_errors=tf.encoding_errors,
            size=size,
        )
        self.descriptors.forget(tf.key)
        old_key = tf.key
        # The old content continues in the copy, with its checkpoint and in-flight lines.
        tf.fd = None
        tf.device, tf.inode = st.st_dev, st.st_ino
        tf.path = cpath
        tf.live = self.paths.target_for(cpath) is not None
        tf.size = st.st_size
        self.followed.copies.pop(tf.key, None)
        # Rotated files are read in this order: the copy (the older lines) where the file was,
        # then its new content.
        self.followed.insert_in_place_of(old_key, tf, fresh)
        self.descriptors.add(fresh)
        self.descriptors.adopt(tf, cfd, now)
        if tf.live:
            self.followed.by_path[cpath] = tf.key
        log.info(
            "file truncated (copytruncate); continuing the old content in its copy",
            extra={"path": fresh.path, "copy": cpath, "offset": tf.read_offset},
        )
        self.claims_changed()  # the old content now has the copy's identity
        if fresh.live:
            self.catch_up.generations(fresh.path, tf.origin, tf.mtime_ns)

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
        followed = self.followed
        for path in names:
            head = read_head(path)
            if head is None:
                continue
            dev, ino, size, data = head
            key = (dev, ino)
            if key == tf.key or (key in followed and key not in followed.copies):
                continue
            if size >= tf.read_offset and tf.fingerprint.matches_prefix(data):
                fd = self.descriptors.open(path, keep=tf.key)
                if fd is None:
                    return None
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == key:
                    return path, fd
                os.close(fd)
        return None

    def refresh_rotated_paths(self) -> None:
        """Find rotated files renamed again (app.log.1 -> app.log.2) so their positions keep their name."""
        for tf in list(self.followed.tracked.values()):
            if not tf.live and tf.path:
                tf.path = current_path(tf.path, tf.key)

    def release_rotated(self, now: float, rotated: list[TailedFile] | None = None) -> None:
        """Close and forget the rotated files that are settled and idle for ``ROTATED_GRACE``
        (of ``rotated`` only, when given: every rotated file followed)."""
        for tf in list(self.followed.tracked.values()) if rotated is None else rotated:
            if tf.live or not tf.settled or now - tf.last_active < ROTATED_GRACE:
                continue
            if rotated is not None and self.followed.tracked.get(tf.key) is not tf:
                continue  # forgotten during this turn
            log.info("released rotated file", extra={"path": tf.path or tf.origin.source_id})
            if tf.path:
                self.checkpointer.remember_released(tf.key, tf.path, tf.position_entry())
            self.forget(tf)
