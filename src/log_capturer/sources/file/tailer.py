"""The tailer: follows the files behind a source's paths, composed of parts.

The file source and the container source each hold a :class:`Tailer`, built
from what differs between them:

- a **paths provider** (:mod:`.paths`): which paths to follow and how their
  lines become records (``watch_directories`` and patterns for files; Docker
  and Kubernetes log files for containers);
- a **checkpointer** (:mod:`.checkpointer`): the saved positions to resume
  from, and where and in which shape acknowledged positions are written.

and owns the parts that are the same for both:

- **identity** (:mod:`.identity`): a followed file is known by device + inode,
  checked against a fingerprint of its first bytes, never by its path;
- the **table of followed files** (:mod:`.followed`);
- the **descriptor cache** (:mod:`.descriptors`): at most ``max_open_files``;
- **rotation** (:mod:`.rotation`): rename, deletion, truncation and
  copytruncate, release of drained rotated files;
- **catch-up** (:mod:`.catchup`): generations rotated away unseen, and saved
  rotated files resumed after a restart;
- reading, a buffer at a time, through :class:`~.tail.TailedFile`.

One thread reads everything. The chunks of one loop turn are handed to the
dispatcher together (:meth:`Dispatcher.submit_many`: one lock and one worker
wake-up for the turn instead of one per file read), each with its own origin
and checkpoint, a file's in read order; handing them over blocks while the
dispatcher queue is full, so backpressure pauses reading. It runs under a
:class:`~log_capturer.sources.supervise.Supervisor`: after a crash it is
restarted with back-off, and every file reads again from the end of the last
chunk it handed to the dispatcher (:meth:`TailedFile.rewind`), so the lines
of a chunk that was being made or handed over are neither lost nor sent twice.
Positions are taken by the read loop when the checkpointer says a write is
due (acknowledgements moved them and ``positions.write_delay`` passed since
the last write, or ``positions.flush_interval`` passed), also between two
files of a turn so a long turn does not hold them up, and written by the
checkpointer's writer thread; once more by :meth:`Tailer.finish`, after the
drain. They only ever hold acknowledged offsets.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.pipeline.dispatcher import Dispatcher, QueueClosed
from log_capturer.record import Chunk
from log_capturer.sources.file.catchup import CatchUp
from log_capturer.sources.file.checkpointer import Checkpointer, Entry, entry_int
from log_capturer.sources.file.descriptors import DescriptorCache
from log_capturer.sources.file.followed import FollowedFiles
from log_capturer.sources.file.identity import FINGERPRINT_BYTES, Fingerprint, Key
from log_capturer.sources.file.paths import PathsProvider, Target
from log_capturer.sources.file.rotation import Rotation
from log_capturer.sources.file.tail import TailedFile
from log_capturer.sources.file.watcher import InotifyWatcher, open_watcher
from log_capturer.sources.supervise import Supervisor

if TYPE_CHECKING:
    from log_capturer.workers.shard import Shard

log = logging.getLogger(__name__)

#: The first wait after a look that found data; it doubles per idle look up to poll_interval, so a
#: file that is being written is looked at again soon (low latency) and an idle one rarely (low CPU).
ACTIVE_POLL = 0.005
#: With inotify: a discovery asked for by events (files created, renamed, deleted) runs at most
#: this often; the periodic one every ``rescan_interval`` still runs.
EVENT_RESCAN_GAP = 0.5
#: A discovery logs each new file it follows at info level up to this many, the rest at debug
#: level and then a count (10,000 files at start-up: one line, not 10,000).
NEW_FILE_LOGS = 100
#: A turn's chunks are handed to the dispatcher once this many are waiting (or at the turn's end,
#: or once they hold ``read_buffer_bytes`` of text): what the read loop holds stays bounded.
TURN_CHUNKS = 256


@dataclass(frozen=True)
class TailSettings:
    poll_interval: float = 0.1
    rescan_interval: float = 5.0
    read_buffer_bytes: int = 1 << 20
    max_line_bytes: int = 1 << 20
    encoding_errors: str = "backslashreplace"
    max_open_files: int = 256
    close_inactive: float = 300.0
    #: ``auto``/``inotify``: look at the files events name (see :mod:`.watcher`); ``poll``: at all.
    watcher: str = "poll"
    #: With inotify: every followed file is still looked at this often (missed events).
    restat_interval: float = 10.0


class Tailer:
    """Follows the files behind ``paths``, resuming from and saving to ``checkpointer``."""

    def __init__(
        self,
        name: str,
        settings: TailSettings,
        paths: PathsProvider,
        checkpointer: Checkpointer,
        dispatcher: Dispatcher,
        metrics: Metrics,
        shard: Shard | None = None,
        after_rescan: Callable[[], None] | None = None,
    ) -> None:
        #: The source's name (its /health entry, ``errors_total{component}``, the supervisor's); the
        #: read thread is called the same with a dash (``file-source``).
        self.name = name
        self.settings = settings
        self.paths = paths
        self.checkpointer = checkpointer
        self.dispatcher = dispatcher
        self.metrics = metrics
        #: In multi-process mode: which new files this worker takes (None: every file).
        self.shard = shard
        #: Called after every rescan, on the read thread (the source sets its gauges).
        self.after_rescan = after_rescan
        self.followed = FollowedFiles()
        self.descriptors = DescriptorCache(settings.max_open_files, metrics, name)
        self.catch_up = CatchUp(
            self.followed, paths, self.descriptors, checkpointer, settings.encoding_errors
        )
        self.rotation = Rotation(
            self.followed,
            paths,
            self.descriptors,
            checkpointer,
            self.catch_up,
            self._submit_now,
            self.publish_claims,
            metrics,
            name,
        )
        #: Restarts the read loop after a crash; its state is the source's health.
        self.supervisor = Supervisor(name, metrics)
        #: The paths the last discovery returned.
        self.targets: dict[str, Target] = {}
        self.lines_read = 0
        self._stop = threading.Event()
        self._rescan_now = threading.Event()
        #: Set to end the read loop's wait: a rescan asked for, a stop, or inotify events.
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_scan = True
        #: With inotify (None: every file is looked at every turn).
        self.watcher: InotifyWatcher | None = None
        #: Files to look at again next turn: a read left bytes unread, or they waited for a rotated
        #: file (rotated files are looked at every turn anyway).
        self._again: set[Key] = set()
        #: Files looked at every turn even with inotify: rotated files, files whose assembler holds
        #: lines, and files no event covers (a symbolic link, a directory that is not watched).
        self._special: set[Key] = set()
        #: Path -> whether it is a symbolic link (checked once per path).
        self._links: dict[str, bool] = {}
        #: The safety re-stat: files still to look at in this round, and the share owed.
        self._restat_keys: list[Key] = []
        self._restat_pos = 0
        self._restat_budget = 0.0
        self._restat_last = time.monotonic()
        #: A discovery followed new files (they are read at the next turn, without a wait).
        self._found_new = False
        #: With inotify: the next turn looks at every file (after a restart of the loop).
        self._look_all = False
        #: Files seen grown or truncated, and what the positions last written showed (see
        #: :meth:`write_positions`).
        self._changes = 0
        self._written_state: tuple[object, ...] | None = None
        #: The entries last taken while no file was rotated (None: take them all next time), the
        #: table they were taken from, the files read since (their entries may have changed) and
        #: those that had lines in flight then (acknowledgements may move them); see
        #: :meth:`write_positions`. ``_structure`` counts what changes the table's paths beyond
        #: reads and acknowledgements (discoveries, rotations, restarts of the loop).
        self._last_entries: dict[str, Entry] | None = None
        self._entries_table: tuple[int, ...] | None = None
        self._touched: set[TailedFile] = set()
        self._unsettled: set[TailedFile] = set()
        self._structure = 0
        #: When every entry is taken again at the latest, even while writes that acknowledgements
        #: ask for keep coming (each of those moves the checkpointer's ``next_flush``).
        self._next_full = 0.0
        #: New files followed by the discovery under way (see NEW_FILE_LOGS).
        self._new_files = 0
        #: The table's state at the last :meth:`_classify_all`.
        self._classified: tuple[int, int, int, int] | None = None
        #: Chunks made this turn and not handed to the dispatcher yet (see :meth:`_flush`), with
        #: each one's checkpoint and file and whether the file was skipping an over-long line
        #: after it (what :meth:`TailedFile.rewind` reads again from), and their text's size.
        self._pending: list[Chunk] = []
        self._pending_checkpoints: list[Checkpoint | None] = []
        self._pending_files: list[tuple[TailedFile, bool]] = []
        self._pending_bytes = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.watcher = open_watcher(self.settings.watcher, self.name, self._wake.set)
        try:
            self.rescan()
        except Exception as exc:
            self.supervisor.crashed(exc, "discovery is tried again by the read loop")
            self._rescan_now.set()
        self._thread = threading.Thread(target=self._run, name=self.name.replace("_", "-"), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading. Nothing is buffered here (what is not read stays in the files), so the
        read thread is given 30 s to end; positions are saved by :meth:`finish`, after the drain."""
        self._stop.set()
        self._rescan_now.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        if self.watcher is not None:
            self.watcher.close()

    def finish(self) -> None:
        """After the drain: save the acknowledged positions, close the files."""
        self.save_positions()
        self.checkpointer.close()
        self.close()

    def close(self) -> None:
        for tf in list(self.followed.tracked.values()):
            tf.close()
        self.descriptors.clear()

    def request_rescan(self) -> None:
        """Run discovery at the next loop turn (e.g. a container started)."""
        self._rescan_now.set()
        self._wake.set()

    def save_positions(self) -> None:
        """Write the acknowledged positions now (under the rotated files' current names)."""
        self.rotation.refresh_rotated_paths()
        self.checkpointer.save(self.followed.tracked.values())

    def write_positions(self, now: float) -> None:
        """Have the acknowledged positions written soon (by the checkpointer's writer thread).

        The periodic write (``flush_interval``, no position moved) is skipped while nothing
        that the entries show changed: no byte read, the same files under the same paths, no
        rotated file, the same released and unmatched entries. Thousands of idle files are then
        not turned into entries every ``flush_interval`` only to write the same file again.

        A write that acknowledgements asked for (``write_delay``) while the table is as it was
        at the last one (the same files under the same paths, no rotated file, no discovery,
        rotation or restart since) takes anew only the entries of the files that can have
        changed: those read since, and those that still had lines in flight then (their
        checkpoints may have moved); the others are the last write's. With 10,000 followed files
        of which 100 are written, the read thread then looks at about 100 files per write
        instead of 10,000 (15 ms every ``write_delay``, during which no file was read). Every
        ``flush_interval``, and after any change of the table, every entry is taken again."""
        cp = self.checkpointer
        followed = self.followed
        tracked = followed.tracked
        no_rotated = len(followed.by_path) == len(tracked)
        state: tuple[object, ...] | None = None
        if not cp.moved and no_rotated:
            state = (
                self._changes,
                len(cp.released),
                len(cp.unclaimed),
                frozenset(followed.by_path.items()),
            )
            if state == self._written_state:
                cp.next_flush = now + cp.flush_interval
                return
        touched, self._touched = self._touched, set()
        table = (id(tracked), len(tracked), self._structure, len(cp.released), len(cp.unclaimed))
        last = self._last_entries
        unsettled: set[TailedFile] = set()
        # Files read this turn whose chunks are not handed over yet: nothing of theirs is in
        # flight, but their checkpoints will move once those chunks are acknowledged.
        pending = {tf for tf, _ in self._pending_files}
        if (
            cp.moved
            and no_rotated
            and last is not None
            and table == self._entries_table
            and now < cp.next_flush
            and now < self._next_full
        ):
            cp.taking(now)
            entries = dict(last)  # (the writer may still hold the last dict: never changed in place)
            for tf in touched | self._unsettled:
                if tracked.get(tf.key) is not tf:
                    continue
                # Read before the entry: once nothing is in flight or waiting to be handed over,
                # the committed offset taken next is final until the file is read again (then it
                # is touched).
                if tf.checkpoint.in_flight_lines or tf in pending:
                    unsettled.add(tf)
                entries[tf.path] = tf.position_entry()
            cp.put(entries)
        else:
            self.rotation.refresh_rotated_paths()
            files = list(tracked.values())
            unsettled = {tf for tf in files if tf.checkpoint.in_flight_lines or tf in pending}
            entries = cp.write_soon(files, now)
            self._next_full = now + cp.flush_interval
        self._last_entries = entries if no_rotated else None
        self._entries_table = table
        self._unsettled = unsettled
        self._written_state = state

    # -- the loop ----------------------------------------------------------------------------------
    def _run(self) -> None:
        self.supervisor.run(self._loop, self._stop, self.rewind)

    def _loop(self) -> None:
        s = self.settings
        checkpointer = self.checkpointer
        next_scan = time.monotonic() + self._scan_interval()
        next_event_scan = 0.0
        scan_wanted = False
        idle_wait = s.poll_interval
        while not self._stop.is_set():
            self._wake.clear()
            watcher = self.watcher
            if watcher is None:
                busy = self.pump_all(time.monotonic())
            else:
                changes = watcher.take()
                scan_wanted |= changes.structure
                now = time.monotonic()
                look_all, self._look_all = changes.overflow or self._look_all, False
                busy = self.pump_all(now, None if look_all else self._work(changes.paths, now))
                # Read again at once only what is known to be unread; the rest waits for an event.
                busy = busy and bool(self._again or self._special)
            now = time.monotonic()
            if now >= next_scan or self._rescan_now.is_set() or (scan_wanted and now >= next_event_scan):
                self._rescan_now.clear()
                scan_wanted = False
                version = -1 if watcher is None else watcher.version
                self.rescan()
                if watcher is not None and watcher.version != version:
                    # Directories were watched anew: a file created in one between its listing and
                    # its watch raised no event; one more search, soon, finds it.
                    scan_wanted = True
                next_scan = now + self._scan_interval()
                next_event_scan = now + EVENT_RESCAN_GAP
                busy |= self._found_new  # read the new files at once
                self._found_new = False
            if checkpointer.due(now):
                self.write_positions(now)
            self.supervisor.ok()
            if busy:
                idle_wait = min(ACTIVE_POLL, s.poll_interval)
            else:
                # Wake up for a write due before the next look (positions moved meanwhile).
                wait = min(
                    idle_wait,
                    max(checkpointer.until_due(now), ACTIVE_POLL),
                    max(next_scan - now, ACTIVE_POLL),
                )
                if watcher is not None:
                    wait = min(wait, s.restat_interval / 10)  # the safety re-stat's next share
                    if scan_wanted:
                        wait = min(wait, max(next_event_scan - now, ACTIVE_POLL))
                self._wake.wait(wait)
                idle_wait = min(idle_wait * 2, self._idle_cap())

    def _scan_interval(self) -> float:
        """Seconds to the next periodic discovery: ``rescan_interval``; with inotify watching
        every directory the search lists (a paths provider with ``watch_roots``), where creations,
        renames and deletions start a search anyway, the periodic one is only a safety net, like
        the re-stat: every ``restat_interval`` (at least ``rescan_interval``)."""
        s = self.settings
        watcher = self.watcher
        roots: list[str] | None = (
            None if watcher is None else getattr(self.paths, "watch_roots", lambda: None)()
        )
        if watcher is None or not roots or watcher.unwatched:
            return s.rescan_interval
        watched = watcher.watched
        if not all(root in watched for root in roots):  # (one missing yet: no event tells of it)
            return s.rescan_interval
        return max(s.rescan_interval, s.restat_interval)

    def _idle_cap(self) -> float:
        """The longest wait of an idle loop: ``poll_interval`` while any file is polled; with
        inotify and none (events wake the loop), a tenth of ``restat_interval``, the safety
        re-stat's next share."""
        s = self.settings
        if self.watcher is None or self._special:
            return s.poll_interval
        return max(s.poll_interval, s.restat_interval / 10)

    def _work(self, changed: set[str], now: float) -> set[Key]:
        """With inotify: the files to look at this turn (see :mod:`.watcher`)."""
        work = self._again | self._special
        by_path = self.followed.by_path
        for path in changed:
            key = by_path.get(path)
            if key is not None:
                work.add(key)
        work.update(self._changed(self._restat_slice(now)))
        return work

    def _changed(self, keys: list[Key]) -> list[Key]:
        """Of the safety re-stat's share, the files a ``stat`` shows changed (size, modification
        time, or the path naming another file) and the ones it cannot tell about: only those
        are looked at by the turn (an unchanged idle file costs one ``stat`` and no more)."""
        tracked = self.followed.tracked
        out: list[Key] = []
        for key in keys:
            tf = tracked.get(key)
            if tf is None:
                continue
            fd = tf.fd
            try:
                st = os.fstat(fd) if fd is not None else os.stat(tf.path)
            except OSError:
                out.append(key)
                continue
            if (
                not tf.live
                or st.st_size != tf.read_offset
                or st.st_mtime_ns != tf.mtime_ns
                or (fd is None and (st.st_dev, st.st_ino) != key)
            ):
                out.append(key)
        return out

    def _restat_slice(self, now: float) -> list[Key]:
        """This turn's share of the safety re-stat: every file once per ``restat_interval``."""
        tracked = self.followed.tracked
        n = len(tracked)
        elapsed, self._restat_last = now - self._restat_last, now
        self._restat_budget = min(float(n), self._restat_budget + n * elapsed / self.settings.restat_interval)
        take = int(self._restat_budget)
        if take <= 0:
            return []
        self._restat_budget -= take
        out: list[Key] = []
        while take > 0:
            if self._restat_pos >= len(self._restat_keys):
                # A new round: also the moment to check which files need a look every turn.
                self._restat_keys = list(tracked)
                self._restat_pos = 0
                self._classify_all()
                if not self._restat_keys:
                    break
            part = self._restat_keys[self._restat_pos : self._restat_pos + take]
            self._restat_pos += len(part)
            take -= len(part)
            out.extend(part)
        return out

    def _needs_look(self, tf: TailedFile) -> bool:
        """Whether ``tf`` is looked at every turn even with inotify (no event tells of it)."""
        if not tf.live:
            return True
        asm = tf.assembler
        if asm is not None and asm.held:
            return True
        watcher = self.watcher
        if watcher is None or tf.path.rpartition(os.sep)[0] not in watcher.watched:
            return True
        link = self._links.get(tf.path)
        if link is None:
            link = self._links[tf.path] = os.path.islink(tf.path)
        return link

    def _classify_all(self) -> None:
        """Find every file that needs a look every turn (as :meth:`_needs_look`, in one pass)."""
        watcher = self.watcher
        if watcher is None:
            return
        watched = watcher.watched
        links = self._links
        special: set[Key] = set()
        for key, tf in self.followed.tracked.items():
            asm = tf.assembler
            if not tf.live or (asm is not None and asm.held):
                special.add(key)
                continue
            path = tf.path
            if path.rpartition(os.sep)[0] not in watched:
                special.add(key)
                continue
            link = links.get(path)
            if link is None:
                link = links[path] = os.path.islink(path)
            if link:
                special.add(key)
        self._special = special
        self._classified = self._table_state()

    def _table_state(self) -> tuple[int, int, int, int]:
        """What the classification depends on, cheaply: the table, the paths, the watches."""
        followed = self.followed
        assert self.watcher is not None
        return (id(followed.tracked), len(followed.tracked), len(followed.by_path), self.watcher.version)

    def rewind(self) -> None:
        """Before a restart: every file reads again from the end of its last chunk handed over
        (and, with inotify, the first turn looks at every file: no event tells of a rewind)."""
        self._drop_pending()  # never handed over: read again
        self._structure += 1
        for tf in list(self.followed.tracked.values()):
            tf.rewind()
        self._look_all = True

    def health(self) -> dict[str, Any]:
        """The read loop's state for ``/health`` (see :meth:`Supervisor.health`)."""
        return self.supervisor.health()

    def pump_all(self, now: float, work: set[Key] | None = None) -> bool:
        """Read once from every file with new data (of ``work`` only, when given: the files
        inotify names, see :meth:`_work`). True when bytes were read."""
        busy = False
        tracked = self.followed.tracked
        if work is None:
            files = list(tracked.values())
        else:
            files = [tf for tf in map(tracked.get, work) if tf is not None]
            if sum(not tf.live for tf in files) > 1:  # rotated files in the table's order
                order = {key: i for i, key in enumerate(tracked)}
                files.sort(key=lambda tf: order[tf.key])
        again: set[Key] = set()
        read: set[Key] = set()
        draining: set[str] = set()
        for tf in files:
            # Rotated files first, one at a time per stream, oldest first: lines keep their order.
            if not tf.live and tf.origin.source_id not in draining:
                if self._pump(tf, now):
                    busy = True
                    read.add(tf.key)
                if tf.unread or tf.partial:
                    draining.add(tf.origin.source_id)
        for tf in files:
            if self._stop.is_set():
                break
            # (the table may have been replaced by a copytruncate during this turn)
            if tf.live and self.followed.tracked.get(tf.key) is tf:
                if tf.origin.source_id in draining:
                    again.add(tf.key)  # read once its rotated file is drained
                    continue
                if self._pump(tf, now):
                    busy = True
                    read.add(tf.key)
                    if tf.read_offset < tf.size:  # more than one buffer: no new event will say so
                        again.add(tf.key)
                if self.checkpointer.moved:  # a turn over many files, or one slow to hand over
                    t = time.monotonic()
                    if self.checkpointer.due(t):
                        self.write_positions(t)
        for tf in files:
            asm = tf.assembler
            if asm is not None and asm.held and asm.due(now):
                chunk = tf.flush_assembler()
                if chunk is not None:
                    self._submit(tf, chunk)
        self._flush()  # the turn's chunks, before any file is released
        self.rotation.release_rotated(now, None if work is None else [tf for tf in files if not tf.live])
        self.descriptors.close_inactive(now, self.settings.close_inactive)
        self._again = again
        if self.watcher is not None:
            if self.followed.tracked is not tracked or len(tracked) != len(self.followed.tracked):
                self._classify_all()  # files came or went during the turn (rotation)
            else:
                # Only a read, a rotation or a removal changes whether a file needs a look every
                # turn (a rename is a discovery's, which checks the whole table).
                special = self._special
                for tf in files:
                    key = tf.key
                    if key not in tracked:
                        special.discard(key)
                    elif key in read or key in special or not tf.live:
                        if self._needs_look(tf):
                            special.add(key)
                        else:
                            special.discard(key)
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
                self._flush()  # (rotation changes the table: what was read goes first)
                self._structure += 1
                if tf.live:
                    self.rotation.lost_path(tf)
                else:  # a rotated file not opened yet was renamed again
                    tf.path = self.rotation.locate(tf)
                    if not tf.path:
                        self.rotation.forget(tf)
                return False
            if st.st_size == tf.read_offset:
                if tf.size != st.st_size:
                    self._touched.add(tf)
                tf.size = st.st_size
                tf.mtime_ns = st.st_mtime_ns
                return False
            if not self._reopen(tf, now):  # (it flushes before a rotation)
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
        if size != tf.read_offset:
            self._changes += 1  # grown or truncated: the entries' sizes and times change
            self._touched.add(tf)
        if size < tf.read_offset or fp is None:
            self._flush()
            self._structure += 1
            self.rotation.truncated(tf, size, now)
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
        self.descriptors.touch(tf)
        if chunk is not None:
            self._submit(tf, chunk)
        return read

    def _submit(self, tf: TailedFile, chunk: Chunk) -> None:
        """Add ``chunk`` (the last one ``tf`` made) to the turn's chunks; they are handed to the
        dispatcher together by :meth:`_flush`, at the turn's end or once enough wait."""
        if chunk.truncated:
            self.metrics.lines_truncated.labels(chunk.origin.source_type).inc(len(chunk.truncated))
        self._touched.add(tf)  # (its checkpoint moves once the chunk is acknowledged)
        self._pending.append(chunk)
        self._pending_checkpoints.append(tf.checkpoint)
        self._pending_files.append((tf, tf.skipping))
        self._pending_bytes += chunk.text_bytes
        if len(self._pending) >= TURN_CHUNKS or self._pending_bytes >= self.settings.read_buffer_bytes:
            self._flush()

    def _submit_now(self, tf: TailedFile, chunk: Chunk) -> None:
        """Hand ``chunk`` over now, after the turn's chunks made before it (rotation's)."""
        self._submit(tf, chunk)
        self._flush()

    def _flush(self) -> None:
        """Hand the chunks made so far to the dispatcher in one call, in the order they were made
        (so each file's in read order), each armed to advance its own checkpoint. Blocks while the
        dispatcher's queue is full or a sink refuses lines (backpressure pauses reading); raises
        :class:`QueueClosed` when the source stops first (what was not handed over stays in the
        files and is read again by the next run, from each file's last chunk handed over)."""
        chunks = self._pending
        if not chunks:
            return
        checkpoints = self._pending_checkpoints
        files = self._pending_files
        self._drop_pending()
        submit_many = self.dispatcher.submit_many
        while True:
            queued = submit_many(chunks, 0.25, checkpoints)
            lines = 0
            for i in range(queued):
                chunk = chunks[i]
                tf, skipping = files[i]
                tf.mark_handed_over(chunk, skipping)
                lines += len(chunk.lines)
            self.lines_read += lines
            if queued == len(chunks):
                return
            if self._stop.is_set():
                raise QueueClosed
            if queued:
                chunks, checkpoints, files = chunks[queued:], checkpoints[queued:], files[queued:]

    def _drop_pending(self) -> None:
        self._pending = []
        self._pending_checkpoints = []
        self._pending_files = []
        self._pending_bytes = 0

    def _reopen(self, tf: TailedFile, now: float) -> bool:
        """Reopen an idle file closed by the descriptor cache, if its path still names it."""
        fd = self.descriptors.open(tf.path)
        if fd is None:
            return False
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != tf.key:
            os.close(fd)
            self._flush()
            self._structure += 1
            self.rotation.lost_path(tf)
            return False
        self.descriptors.adopt(tf, fd, now)
        return True

    # -- discovery ---------------------------------------------------------------------------------
    def rescan(self) -> None:
        """Ask the paths provider for the paths to follow, follow the new files, notice the lost."""
        targets = self.paths.discover()
        self.targets = targets
        self._structure += 1
        self._new_files = 0
        followed = self.followed
        unclaimed = self.checkpointer.unclaimed
        seen: dict[Key, str] = {}
        # Paths naming files not followed yet, with what the scan saw there.
        fresh: list[tuple[str, Target, bool, os.stat_result]] = []
        # Inode numbers from the directory listing (GlobPaths): a path still naming the file
        # followed there needs no stat (a search of thousands of idle files stays cheap).
        listed: dict[str, int] = getattr(self.paths, "inodes", {})
        by_path = followed.by_path
        for path, target in targets.items():
            known = by_path.get(path)
            if known is not None and listed.get(path) == known[1]:
                if known not in seen:
                    seen[known] = path
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue  # a hard link or symlink to a file already followed
            seen[key] = path
            tf = followed.get(key)
            if tf is not None:
                if tf.path != path or not tf.live:
                    if tf.live:
                        followed.unlink_path(tf)
                    tf.path = path
                    tf.live = True
                followed.by_path[path] = key
                continue
            if (
                self.shard is not None
                and key not in unclaimed
                and not self.shard.admits(target.origin.source_id, key, path)
            ):
                continue  # another worker's file
            grown_copy = key in followed.copies
            if grown_copy:
                if st.st_size == followed.copies[key][1]:
                    continue
                del followed.copies[key]  # a "copy" that grows is a log of its own
            fresh.append((path, target, not grown_copy, st))
        for key, tf in list(followed.tracked.items()):
            if tf.live and key not in seen:
                self.rotation.lost_path(tf)
        self.rotation.refresh_rotated_paths()
        if self.checkpointer.released:
            self.checkpointer.refresh_released()
        followed.reset_fingerprints()
        for path, target, may_be_copy, st in fresh:
            self._new_file(path, target, may_be_copy, st)
        if self._new_files > NEW_FILE_LOGS:
            log.info(
                "following files",
                extra={
                    "files": self._new_files,
                    "logged_each": NEW_FILE_LOGS,
                    "followed": len(followed.tracked),
                },
            )
        for key in [k for k in followed.copies if k not in seen]:
            del followed.copies[key]
        if unclaimed:
            self.catch_up.resume_saved()
        if self.watcher is not None:
            self._watch(targets)
        self._first_scan = False
        if self.after_rescan is not None:
            self.after_rescan()
        self.publish_claims()

    def _watch(self, targets: dict[str, Target]) -> None:
        """Watch the directories of the paths found (and the provider's roots, for new files)."""
        assert self.watcher is not None
        roots: list[str] | None = getattr(self.paths, "watch_roots", lambda: None)()
        # (GlobPaths lists every directory it searched, those of the paths found included)
        directories = set(roots) if roots else {os.path.dirname(path) for path in targets}
        self.watcher.watch(directories)
        links = self._links
        if len(links) > len(targets):
            self._links = {p: v for p, v in links.items() if p in targets}
        if self._table_state() != self._classified:  # (and once per safety re-stat round anyway)
            self._classify_all()

    def publish_claims(self) -> None:
        """In multi-process mode, tell the other workers which files this one follows."""
        if self.shard is not None:
            self.shard.publish(self.followed.tracked)

    def _new_file(
        self, path: str, target: Target, may_be_copy: bool = True, seen: os.stat_result | None = None
    ) -> None:
        now = time.monotonic()
        fd = self.descriptors.open(path)
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
        had_entry = key in self.checkpointer.unclaimed
        saved = self.checkpointer.claim(key, head, st.st_size)
        if saved is not None:
            offset, log_count = entry_int(saved, "offset"), entry_int(saved, "log_count")
            if offset > st.st_size:
                offset, log_count = 0, 0
        else:
            unclaimed = key in self.checkpointer.unclaimed
            shard = self.shard
            if unclaimed and shard is not None and not shard.admits(target.origin.source_id, key, path):
                os.close(fd)  # a reused inode, not the saved file: the worker of its path takes it
                return
            directory = os.path.dirname(path)
            if may_be_copy and fp.complete and fp.digest in self.followed.complete_fingerprints(directory):
                # A copy of a followed file (copytruncate's copy made before the truncation).
                os.close(fd)
                self.followed.copies[key] = (path, st.st_size)
                return
            if self._first_scan and not unclaimed and self.paths.read_from_end(target):
                offset = st.st_size
        tf = TailedFile(
            path=path,
            device=st.st_dev,
            inode=st.st_ino,
            fingerprint=fp,
            origin=target.origin,
            checkpoint=self.checkpointer.checkpoint(offset),
            read_offset=offset,
            assembler=target.new_assembler(),
            encoding_errors=self.settings.encoding_errors,
            saved_log_count=log_count,
            size=st.st_size,
            # Known from the start: if it is rotated away before its first read, the generations
            # after it are caught up from this time on (0 would skip the catch-up).
            mtime_ns=st.st_mtime_ns,
        )
        self.followed.add(tf)
        self.followed.index_fingerprint(tf)
        self.descriptors.adopt(tf, fd, now)
        self._again.add(key)  # with inotify: its events so far named a path not followed yet
        self._found_new = True
        self._new_files += 1
        level = logging.INFO if self._new_files <= NEW_FILE_LOGS else logging.DEBUG
        log.log(level, "following file", extra={"path": path, "offset": offset})
        since = self.rotation.rotated_since.pop(path, 0)
        if not since and not had_entry and self.paths.reads_rotated_when_new(target):
            since = 1  # every generation there
        if seen is not None and (seen.st_dev, seen.st_ino) != key:
            # The scan saw another file here, rotated away before this open (Docker at full
            # speed): it and any generation after it were rotated away unseen.
            since = min(since or seen.st_mtime_ns, seen.st_mtime_ns)
        if since and not self._first_scan:  # at start-up, rotated files found are history
            # Generations made and rotated away since the last file followed at this path.
            self.catch_up.generations(path, target.origin, since)

    # -- reporting ---------------------------------------------------------------------------------
    def positions(self) -> dict[str, Entry]:
        """Acknowledged positions by current path, plus saved entries not matched yet."""
        return self.checkpointer.entries(self.followed.tracked.values())

    def files(self, live: bool = True) -> list[TailedFile]:
        return self.followed.files(live)

    def lag_bytes(self) -> dict[str, int]:
        return self.followed.lag_bytes()

    def in_flight(self) -> int:
        return self.followed.in_flight()

    @property
    def watcher_mode(self) -> str:
        """``inotify`` or ``poll``: how changes are noticed (``poll`` also when inotify failed)."""
        return "poll" if self.watcher is None else "inotify"

    @property
    def polled_files(self) -> int:
        """Live files looked at every turn: every one with ``poll``; with inotify, those no event
        covers (a symbolic link, a directory that could not be watched) or holding multiline lines."""
        if self.watcher is None:
            return len(self.followed.by_path)
        tracked = self.followed.tracked
        return sum(1 for key in list(self._special) if (tf := tracked.get(key)) is not None and tf.live)

    @property
    def open_files(self) -> int:
        return len(self.descriptors)
