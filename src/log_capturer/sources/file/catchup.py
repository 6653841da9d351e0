"""Catch-up: files that no watched path names but whose lines are still owed.

Two kinds, both found by looking in the directory of a path the tailer knows:

- **Generations rotated away unseen** (:meth:`CatchUp.generations`): when a
  file rotates (or is truncated), or at start-up for a saved file that is gone
  or rotated, the untracked files next to its path whose name starts with its
  name (``app.log.1``, ``app.log-20260101``, ``0.log.20260101-120000``), that
  no watched pattern covers, that the paths provider lets be read (not
  compressed), were modified at or after the last write seen on the file they
  followed, and are not a copy of a followed file nor one read to its end and
  released (Docker renames every generation at each rotation). The directory
  is listed again until a listing finds nothing new (readdir may miss a file
  renamed meanwhile), and a listed name is opened by the inode the listing
  gave (:func:`~.identity.open_listed`). They are read from their start,
  oldest first, before the live file's newer lines.
- **Saved rotated files** (:meth:`CatchUp.resume_saved`): at start-up, saved
  entries no watched path claimed (a rotated file still draining when the agent
  stopped, a ``copytruncate`` copy) are found again by inode, or by fingerprint
  for a copy, in their directory and resumed from their saved offset. An entry
  whose directory does not exist yet (not mounted) is kept for a later rescan.
"""

from __future__ import annotations

import logging
import os
import time

from log_capturer.record import Origin
from log_capturer.sources.file.checkpointer import Checkpointer, Entry, entry_int, entry_matches, utc_ns
from log_capturer.sources.file.descriptors import DescriptorCache
from log_capturer.sources.file.followed import FollowedFiles
from log_capturer.sources.file.identity import Fingerprint, Key, open_listed, read_head
from log_capturer.sources.file.paths import PathsProvider
from log_capturer.sources.file.tail import TailedFile

log = logging.getLogger(__name__)

#: Listings of one search for generations at most (see :meth:`CatchUp.generations`).
LISTINGS = 8


class CatchUp:
    def __init__(
        self,
        followed: FollowedFiles,
        paths: PathsProvider,
        descriptors: DescriptorCache,
        checkpointer: Checkpointer,
        encoding_errors: str,
    ) -> None:
        self.followed = followed
        self.paths = paths
        self.descriptors = descriptors
        self.checkpointer = checkpointer
        self.encoding_errors = encoding_errors
        #: Live paths whose last search lost track of a file (see :meth:`generations`), and how
        #: far back that search looked.
        self._unsettled: dict[str, int] = {}

    def generations(
        self, live_path: str, origin: Origin, since_ns: int, known: set[Key] | frozenset[Key] = frozenset()
    ) -> None:
        """Follow the generations of ``live_path`` rotated away unseen since ``since_ns`` (not ``known``).

        A search can lose track of a file: Docker renames every generation at each rotation, and
        a file renamed again and again while it is looked for is not found under any name. The
        directory is then listed again; if the search still ends with such a file, the next
        search of ``live_path`` looks back as far as this one did (its own ``since_ns``, later,
        would leave the file out for good)."""
        if not live_path or not since_ns:
            return
        since_ns = min(since_ns, self._unsettled.get(live_path, since_ns))
        directory, base = os.path.split(live_path)
        paths = self.paths
        target = paths.target_for(live_path) or paths.target_for_source(origin.source_id)
        if target is None:
            return
        copies = self.followed.complete_digests()
        found: dict[Key, tuple[int, str, os.stat_result, Fingerprint]] = {}
        # A listing made while files are renamed may miss one (readdir does not promise to return
        # an entry renamed during it): list again until a listing finds nothing new and loses
        # track of nothing.
        settled = False
        for _ in range(LISTINGS):
            before = len(found)
            lost = self._list_generations(directory, base, since_ns, known, copies, found)
            if lost is None:
                return
            if len(found) == before and not lost:
                settled = True
                break
        if settled:
            self._unsettled.pop(live_path, None)
        else:
            self._unsettled[live_path] = since_ns
        followed = self.followed
        for _, path, st, fp in sorted(found.values(), key=lambda f: (f[0], f[1])):
            tf = TailedFile(
                path=path,
                device=st.st_dev,
                inode=st.st_ino,
                fingerprint=fp,
                origin=origin,
                checkpoint=self.checkpointer.checkpoint(0),
                live=False,
                live_path=live_path,
                assembler=target.new_assembler(),
                encoding_errors=self.encoding_errors,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
            )
            followed.add(tf)
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
    ) -> int | None:
        """One listing for :meth:`generations`: adds the untracked generations of ``base``
        modified at or after ``since_ns`` to ``found``. Returns how many listed files it lost
        track of (gone, or renamed again each time it looked), None when the directory cannot
        be listed."""
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
            return None
        followed = self.followed
        unclaimed = self.checkpointer.unclaimed
        released = self.checkpointer.released
        lost = 0
        for listed, ino in names:
            opened = open_listed(listed, ino)
            if opened is None:
                lost += 1  # deleted since the listing, or renamed again each time it was looked for
                continue
            path, st, data = opened
            if self.paths.target_for(path) is not None or not self.paths.rotated_name_ok(path):
                continue
            key = (st.st_dev, st.st_ino)
            if (
                key in found
                or key in followed
                or key in unclaimed
                or key in followed.copies
                or key in released  # read to its end already, renamed again since
                or key in known
            ):
                continue
            fp = Fingerprint.of_head(data)
            if st.st_mtime_ns < since_ns or fp.digest in copies:
                continue
            found[key] = (st.st_mtime_ns, path, st, fp)
        return lost

    def resume_saved(self) -> None:
        """Resume the saved files no watched path names, then catch up their generations."""
        cp, paths = self.checkpointer, self.paths
        catch_up: list[tuple[str, Origin, int]] = []
        done: set[Key] = set()  # saved files found fully read: never caught up as unread
        for key, (path, entry) in list(cp.unclaimed.items()):
            directory = os.path.dirname(path)
            if not os.path.isdir(directory):
                continue  # maybe not mounted yet: keep the entry
            del cp.unclaimed[key]
            source_id = str(entry["source_id"]) if isinstance(entry.get("source_id"), str) else path
            live_path = str(entry["live_path"]) if isinstance(entry.get("live_path"), str) else path
            found = self._find_entry(key, path, entry)
            if found is None:
                log.info("saved position of a file that no longer exists dropped", extra={"path": path})
                target = paths.target_for(live_path) or paths.target_for_source(source_id)
                if target is not None:
                    catch_up.append((live_path, target.origin, utc_ns(entry.get("last_read"))))
                continue
            fpath, fd, st = found
            done.add((st.st_dev, st.st_ino))
            offset = entry_int(entry, "offset")
            target = paths.target_for(fpath) or paths.target_for_source(source_id)
            if (st.st_dev, st.st_ino) in self.followed or offset > st.st_size or target is None:
                os.close(fd)
                continue
            live = paths.target_for(fpath) is not None
            if not live:
                catch_up.append((live_path, target.origin, st.st_mtime_ns))
                if offset >= st.st_size:
                    os.close(fd)
                    cp.remember_released((st.st_dev, st.st_ino), fpath, entry)
                    continue
            fp = Fingerprint.from_entry(entry) or Fingerprint.of(fd, st.st_size)
            tf = TailedFile(
                path=fpath,
                device=st.st_dev,
                inode=st.st_ino,
                fingerprint=fp,
                origin=target.origin,
                checkpoint=self.checkpointer.checkpoint(offset),
                read_offset=offset,
                live=live,
                live_path=live_path,
                assembler=target.new_assembler(),
                encoding_errors=self.encoding_errors,
                saved_log_count=entry_int(entry, "log_count"),
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
            )
            self.followed.add(tf)
            self.descriptors.adopt(tf, fd, time.monotonic())
            log.info(
                "resuming a rotated file from its saved position",
                extra={"path": fpath, "source_id": tf.origin.source_id, "offset": offset},
            )
        for live_path, origin, since in sorted(catch_up, key=lambda c: c[2]):
            self.generations(live_path, origin, since, done)

    def _find_entry(self, key: Key, path: str, entry: Entry) -> tuple[str, int, os.stat_result] | None:
        """The file a saved entry describes: at its path, renamed in its directory, or a copy of it."""
        fp = Fingerprint.from_entry(entry)
        offset = entry_int(entry, "offset")
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
            if (dev, ino) in self.followed or size < offset:
                continue
            if not entry_matches(entry, data, size):
                continue
            fd = self.descriptors.open(candidate)
            if fd is None:
                return None
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == (dev, ino):
                return candidate, fd, st
            os.close(fd)
        return None
