"""The checkpointer: saved positions in, acknowledged positions out (Vector's ``checkpointer``).

At start-up it holds the saved entries (path -> entry, as the positions file
has them once the source flattened its own format) by file identity, until
the tailer matches each to a file: :meth:`Checkpointer.claim` for a file at a
watched path, the catch-up (:mod:`.catchup`) for rotated files that were still
draining. An entry that is never matched is saved again unchanged, so a
directory not mounted yet loses nothing.

What it writes is only ever ``committed``: the end of the longest prefix of
chunks that every sink acknowledged (:meth:`TailedFile.position_entry`). Live
files are written after rotated ones, so when a path names both, the live
file's entry wins. Rotated files read to their end, acknowledged and released
but still on disk stay in the file as ``state: released``, so a restart knows
them as read and does not catch them up as generations rotated away unseen.

A source gives the store (None: ``positions.enabled: false``) and ``shape``,
which turns the flat entries into its file's format (the file source writes
them as they are; the container source groups them by container).

When it is written: every :class:`Checkpoint` made here tells the
checkpointer when acknowledgements move it (:meth:`Checkpointer.acknowledged`,
a flag set on the sink's thread). The read loop asks :meth:`Checkpointer.due`
and takes the entries when positions moved and ``write_delay`` passed since
the last write, or ``flush_interval`` passed in any case; a
:class:`PositionWriter` thread writes them, so the fsync never holds up
reading. Writes are coalesced: at most one per ``write_delay``, however many
acknowledgements came in between, and one waiting to be written is replaced
by a newer one. Positions are written no later than about ``write_delay``
after an acknowledgement, which bounds what a kill -9 sends again.
"""

from __future__ import annotations

import calendar
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.sources.file.identity import Fingerprint, Key, current_path
from log_capturer.sources.file.tail import TailedFile
from log_capturer.sources.positions import PositionStore

log = logging.getLogger(__name__)

Entry = dict[str, Any]

#: Released files remembered per source (the oldest are forgotten first).
MAX_RELEASED = 1000

#: ``positions.write_delay``'s default: the longest acknowledged positions wait to be written.
WRITE_DELAY = 0.3


def entry_int(entry: Entry, name: str) -> int:
    """A saved non-negative integer field; 0 when absent or not one."""
    v = entry.get(name, 0)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def utc_ns(value: object) -> int:
    """A saved ``last_read`` (UTC, whole seconds) as ns since the epoch; 0 when absent."""
    if isinstance(value, str):
        try:
            return calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")) * 1_000_000_000
        except ValueError:
            pass
    return 0


def entry_matches(entry: Entry, head: bytes, size: int) -> bool:
    """A saved entry describes the file whose first bytes are ``head``: its fingerprint matches
    (an entry of format 1, without one: its offset fits in ``size``)."""
    fp = Fingerprint.from_entry(entry)
    if fp is None:
        return "fingerprint" not in entry and entry_int(entry, "offset") <= size
    return fp.matches_prefix(head)


def _as_is(entries: dict[str, Entry]) -> dict[str, Entry]:
    return entries


class PositionWriter:
    """Writes entries to ``store`` on a thread of its own, the newest first.

    :meth:`put` hands entries over and returns at once; if the thread is still
    writing earlier ones, the entries waiting are replaced (only the newest
    matter). :meth:`write` writes at once, after the write under way. Entries
    equal to the last written are not written again. A failure is logged and
    counted; the next write tries again.
    """

    def __init__(self, store: PositionStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        #: Files written (entries equal to the last written are not written again).
        self.writes = 0
        self._cond = threading.Condition()
        #: Entries handed over are numbered; older ones are never written after newer ones.
        self._seq = 0
        self._waiting: tuple[int, dict[str, Entry]] | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self._io = threading.Lock()
        self._last: dict[str, Entry] | None = None
        self._last_seq = 0

    def put(self, entries: dict[str, Entry]) -> None:
        """Write ``entries`` soon, on the writer's thread."""
        with self._cond:
            if self._closed:
                return
            self._seq += 1
            self._waiting = (self._seq, entries)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"positions-{self.store.path.stem}", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def write(self, entries: dict[str, Entry]) -> None:
        """Write ``entries`` now (the entries waiting, older, are dropped)."""
        with self._cond:
            self._seq += 1
            seq = self._seq
            self._waiting = None
        self._write(seq, entries)

    def close(self) -> None:
        """Write what waits, then end the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._waiting is None and not self._closed:
                    self._cond.wait()
                waiting, self._waiting = self._waiting, None
            if waiting is None:
                return
            self._write(*waiting)

    def _write(self, seq: int, entries: dict[str, Entry]) -> None:
        with self._io:
            if seq < self._last_seq:
                return  # newer entries are written already
            if entries == self._last:
                self._last_seq = seq
                return
            try:
                self.store.save(entries)
            except OSError as exc:
                log.error("cannot save positions to %s: %s", self.store.path, exc)
                self.metrics.errors.labels("positions", "save_failed").inc()
                return
            self._last, self._last_seq = entries, seq
            self.writes += 1


class Checkpointer:
    def __init__(
        self,
        saved: dict[str, Entry],
        store: PositionStore | None,
        metrics: Metrics,
        flush_interval: float,
        shape: Callable[[dict[str, Entry]], dict[str, Entry]] = _as_is,
        write_delay: float = WRITE_DELAY,
    ) -> None:
        self.store = store
        self.metrics = metrics
        #: Seconds between two writes even when no acknowledgement moved a position (rotated
        #: files renamed, files released).
        self.flush_interval = flush_interval
        #: Seconds an acknowledged position waits at most to be written; also the least time
        #: between two writes that acknowledgements ask for.
        self.write_delay = write_delay
        self.shape = shape
        self.writer = PositionWriter(store, metrics) if store is not None else None
        #: An acknowledgement moved a position since the entries were last taken (set on the
        #: sinks' threads, cleared on the read thread).
        self.moved = False
        #: When the entries were last taken (monotonic; never yet: a first acknowledgement is
        #: written at once), and when the next write is due anyway.
        self.last_write = float("-inf")
        self.next_flush = time.monotonic() + flush_interval
        #: Saved entries not matched to a file yet, by identity.
        self.unclaimed: dict[Key, tuple[str, Entry]] = {}
        for path, entry in saved.items():
            key = (entry_int(entry, "device"), entry_int(entry, "inode"))
            if key != (0, 0):
                self.unclaimed[key] = (path, entry)
        #: Rotated files read to their end, acknowledged and released, still on disk, by identity.
        self.released: dict[Key, Entry] = {}
        #: Lines acknowledged from files no longer followed, per source id.
        self.released_lines: Counter[str] = Counter()

    # -- when to write ---------------------------------------------------------------------------
    def checkpoint(self, committed: int) -> Checkpoint:
        """A checkpoint for a followed file, starting at ``committed``, that reports its moves."""
        return Checkpoint(committed, on_advance=self.acknowledged)

    def acknowledged(self) -> None:
        """A position moved (any thread; just a flag)."""
        self.moved = True

    def due(self, now: float) -> bool:
        """A write is due: positions moved and ``write_delay`` passed since the last, or
        ``flush_interval`` passed."""
        return (self.moved and now - self.last_write >= self.write_delay) or now >= self.next_flush

    def until_due(self, now: float) -> float:
        """Seconds until :meth:`due` (as things stand: an acknowledgement may bring it closer)."""
        flush = self.next_flush - now
        if self.moved:
            return max(0.0, min(flush, self.last_write + self.write_delay - now))
        return max(0.0, flush)

    def write_soon(self, files: Iterable[TailedFile], now: float) -> dict[str, Entry]:
        """Take the entries of ``files`` now (on the read thread) and have the writer write them;
        returns them (before :attr:`shape`)."""
        self.taking(now)
        entries = self.entries(files)
        self.put(entries)
        return entries

    def taking(self, now: float) -> None:
        """The entries are about to be taken: a position that moves from now on is written by
        the next write."""
        self.moved = False
        self.last_write = now
        self.next_flush = now + self.flush_interval

    def put(self, entries: dict[str, Entry]) -> None:
        """Have the writer write ``entries`` (as :meth:`entries` returns them, taken after
        :meth:`taking`; never changed afterwards)."""
        if self.writer is not None:
            self.writer.put(self.shape(entries))

    def close(self) -> None:
        """End the writer's thread (after the last :meth:`save`)."""
        if self.writer is not None:
            self.writer.close()

    def claim(self, key: Key, head: bytes, size: int) -> Entry | None:
        """The saved entry of the file ``key`` (first bytes ``head``), taken out of the unclaimed
        ones; None when there is none or it describes another file (a reused inode)."""
        claimed = self.unclaimed.get(key)
        if claimed is None or not entry_matches(claimed[1], head, size):
            return None
        del self.unclaimed[key]
        return claimed[1]

    def released_file(self, tf: TailedFile) -> None:
        """``tf`` is no longer followed: its acknowledged lines still count for its source."""
        self.released_lines[tf.origin.source_id] += tf.saved_log_count + tf.checkpoint.acked_lines

    def remember_released(self, key: Key, path: str, entry: Entry) -> None:
        """Keep ``entry`` as ``state: released`` while the file is at ``path``."""
        self.released.pop(key, None)
        self.released[key] = {**entry, "path": path, "state": "released"}
        while len(self.released) > MAX_RELEASED:
            del self.released[next(iter(self.released))]

    def refresh_released(self) -> None:
        """Follow released files renamed again (app.log.2 -> app.log.3); forget the deleted ones."""
        for key, entry in list(self.released.items()):
            path = current_path(str(entry["path"]), key)
            if path:
                entry["path"] = path
            else:
                del self.released[key]

    def entries(self, files: Iterable[TailedFile]) -> dict[str, Entry]:
        """Acknowledged positions of ``files`` by current path, plus the released files and the
        saved entries not matched yet.

        Two files under one name means one name is stale: a rotated or released file renamed
        again (``app.log.3`` -> ``app.log.4``) since its name was last looked up, while another
        took its old name. Each of them is then looked up by inode, so neither entry hides the
        other (a released copy left out would be read again, from its start, after a restart)."""
        items: list[tuple[str, Key, Entry]] = [
            (path, (entry_int(e, "device"), entry_int(e, "inode")), e)
            for path, e in list(self.unclaimed.values())
        ]  # list(): copied at once; the Kafka sink's transactions call this from their own thread
        followed = list(files)
        released = list(self.released.items())
        if released:
            keys = {tf.key for tf in followed}
            for key, entry in released:
                if key in keys:
                    continue  # followed again (it grew): its own entry says where
                saved = dict(entry)
                items.append((str(saved.pop("path")), key, saved))
        # Rotated files first, so that the live file's entry wins a name both have.
        ordered = [tf for tf in followed if tf.path and not tf.live]
        ordered += [tf for tf in followed if tf.path and tf.live]
        entries: dict[str, Entry] = {path: entry for path, _, entry in items}
        for tf in ordered:
            entries[tf.path] = tf.position_entry()
        if len(entries) == len(items) + len(ordered):
            return entries
        # Renames shift every generation at once (a file's new name is the next one's old
        # name): on any clash, every name is looked up again.
        entries = {}
        items += [(tf.path, tf.key, tf.position_entry()) for tf in ordered]
        for path, key, entry in items:
            entries[(current_path(path, key) or path) if key != (0, 0) else path] = entry
        return entries

    def save(self, files: Iterable[TailedFile]) -> None:
        """Write the positions file now (a failure is logged and counted; the next save tries again)."""
        self.moved = False
        self.last_write = time.monotonic()
        self.next_flush = self.last_write + self.flush_interval
        if self.writer is not None:
            self.writer.write(self.shape(self.entries(files)))
