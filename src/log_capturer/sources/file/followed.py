"""The table of followed files, shared by the tailer's parts.

``tracked`` maps each followed file's identity to its :class:`TailedFile`, in
reading order (a rotated file's older content before its newer one); ``by_path``
maps each watched path to the identity it names; ``copies`` holds the files
recognised as copies of followed files (``copytruncate``'s copy seen before the
truncation), which are not read unless they grow.

The read thread alone changes the table. Other threads (``/stats``,
``/positions``, the lag metrics) only iterate snapshots of it: ``tracked`` is
replaced, never reordered in place (:meth:`FollowedFiles.insert_in_place_of`).
"""

from __future__ import annotations

import os

from log_capturer.sources.file.identity import Key
from log_capturer.sources.file.tail import TailedFile


class FollowedFiles:
    def __init__(self) -> None:
        self.tracked: dict[Key, TailedFile] = {}
        #: Watched path -> the identity it names.
        self.by_path: dict[str, Key] = {}
        #: Copies of followed files (same complete fingerprint) that are not read: key -> (path, size).
        self.copies: dict[Key, tuple[str, int]] = {}
        #: Directory -> complete fingerprint -> identity (built lazily, once per rescan).
        self._fp_index: dict[str, dict[str, Key]] = {}

    def __contains__(self, key: Key) -> bool:
        return key in self.tracked

    def get(self, key: Key) -> TailedFile | None:
        return self.tracked.get(key)

    def add(self, tf: TailedFile) -> None:
        """Follow ``tf``; a live file is also known by its path."""
        self.tracked[tf.key] = tf
        if tf.live:
            self.by_path[tf.path] = tf.key

    def remove(self, tf: TailedFile) -> None:
        """Stop following ``tf`` (its descriptor is the caller's to close)."""
        if self.tracked.get(tf.key) is tf:
            del self.tracked[tf.key]
        if tf.live:
            self.unlink_path(tf)

    def unlink_path(self, tf: TailedFile) -> None:
        """``tf``'s path no longer names it."""
        if self.by_path.get(tf.path) == tf.key:
            del self.by_path[tf.path]

    def insert_in_place_of(self, old_key: Key, *files: TailedFile) -> None:
        """Put ``files`` where ``old_key`` was in the reading order (copytruncate: the copy, then
        the new content), in a new dict, since other threads may be iterating the old one."""
        keys = {tf.key for tf in files}
        order: dict[Key, TailedFile] = {}
        for key, other in self.tracked.items():
            if key == old_key:
                for tf in files:
                    order[tf.key] = tf
            elif key not in keys:
                order[key] = other
        for tf in files:
            order.setdefault(tf.key, tf)
        self.tracked = order

    def files(self, live: bool = True) -> list[TailedFile]:
        return [tf for tf in list(self.tracked.values()) if tf.live is live]

    def complete_fingerprints(self, directory: str) -> dict[str, Key]:
        """Complete fingerprints of the followed files in ``directory`` (built once per rescan)."""
        index = self._fp_index.get(directory)
        if index is None:
            index = self._fp_index[directory] = {
                tf.fingerprint.digest: tf.key
                for tf in self.tracked.values()
                if tf.fingerprint.complete and os.path.dirname(tf.path) == directory
            }
        return index

    def index_fingerprint(self, tf: TailedFile) -> None:
        """Add a newly followed file to the fingerprint index of this rescan."""
        if tf.fingerprint.complete:
            self.complete_fingerprints(os.path.dirname(tf.path))[tf.fingerprint.digest] = tf.key

    def reset_fingerprints(self) -> None:
        """Forget the fingerprint index (files changed since the last rescan)."""
        self._fp_index.clear()

    def complete_digests(self) -> set[str]:
        """Complete fingerprints of every followed file."""
        return {t.fingerprint.digest for t in self.tracked.values() if t.fingerprint.complete}

    def in_flight(self) -> int:
        """Lines handed to the dispatcher and not acknowledged yet."""
        return sum(tf.checkpoint.in_flight_lines for tf in list(self.tracked.values()))

    def lag_bytes(self) -> dict[str, int]:
        """Bytes of each live file not acknowledged yet, by path."""
        return {tf.path: max(0, tf.size - tf.checkpoint.committed) for tf in self.files()}
