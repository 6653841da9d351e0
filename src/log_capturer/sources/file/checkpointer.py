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
"""

from __future__ import annotations

import calendar
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from log_capturer.observability.metrics import Metrics
from log_capturer.sources.file.identity import Fingerprint, Key, current_path
from log_capturer.sources.file.tail import TailedFile
from log_capturer.sources.positions import PositionStore

log = logging.getLogger(__name__)

Entry = dict[str, Any]

#: Released files remembered per source (the oldest are forgotten first).
MAX_RELEASED = 1000


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


class Checkpointer:
    def __init__(
        self,
        saved: dict[str, Entry],
        store: PositionStore | None,
        metrics: Metrics,
        flush_interval: float,
        shape: Callable[[dict[str, Entry]], dict[str, Entry]] = _as_is,
    ) -> None:
        self.store = store
        self.metrics = metrics
        #: Seconds between two saves by the read loop.
        self.flush_interval = flush_interval
        self.shape = shape
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
        saved entries not matched yet."""
        entries: dict[str, Entry] = dict(list(self.unclaimed.values()))
        followed = list(files)
        keys = {tf.key for tf in followed}
        for key, entry in list(self.released.items()):
            if key in keys:
                continue  # followed again (it grew): its own entry says where
            saved = dict(entry)
            entries[str(saved.pop("path"))] = saved
        for tf in followed:
            if tf.path and not tf.live:
                entries[tf.path] = tf.position_entry()
        for tf in followed:
            if tf.path and tf.live:
                entries[tf.path] = tf.position_entry()
        return entries

    def save(self, files: Iterable[TailedFile]) -> None:
        """Write the positions file (a failure is logged and counted; the next save tries again)."""
        if self.store is None:
            return
        try:
            self.store.save(self.shape(self.entries(files)))
        except OSError as exc:
            log.error("cannot save positions to %s: %s", self.store.path, exc)
            self.metrics.errors.labels("positions", "save_failed").inc()
