"""Builders for the tailer's parts, on real files in a temporary directory (no dispatcher)."""

from __future__ import annotations

import os
from pathlib import Path

from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Chunk, Origin
from log_capturer.sources.file.catchup import CatchUp
from log_capturer.sources.file.checkpointer import Checkpointer, Entry
from log_capturer.sources.file.descriptors import DescriptorCache
from log_capturer.sources.file.followed import FollowedFiles
from log_capturer.sources.file.identity import Fingerprint
from log_capturer.sources.file.paths import Target
from log_capturer.sources.file.rotation import Rotation
from log_capturer.sources.file.tail import TailedFile


def followed_file(path: Path, live: bool = True, offset: int = 0, source_id: str = "") -> TailedFile:
    """A TailedFile for the real file at ``path``, read up to ``offset`` (nothing open)."""
    st = path.stat()
    with path.open("rb") as f:
        fp = Fingerprint.of(f.fileno())
    return TailedFile(
        path=str(path),
        device=st.st_dev,
        inode=st.st_ino,
        fingerprint=fp,
        origin=Origin("file", source_id or str(path)),
        checkpoint=Checkpoint(offset),
        read_offset=offset,
        live=live,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
    )


class ListedPaths:
    """A paths provider that follows exactly the paths it is given (and is told to)."""

    def __init__(self, *paths: Path, from_end: bool = False) -> None:
        self.paths = {str(p) for p in paths}
        self.from_end = from_end
        self._targets: dict[str, Target] = {}

    def discover(self) -> dict[str, Target]:
        return {p: self._target(p) for p in sorted(self.paths) if os.path.isfile(p)}

    def _target(self, path: str) -> Target:
        return self._targets.setdefault(path, Target(Origin("file", path)))

    def target_for(self, path: str) -> Target | None:
        return self._target(path) if path in self.paths else None

    def target_for_source(self, source_id: str) -> Target | None:
        return self._target(source_id)

    def rotated_name_ok(self, path: str) -> bool:
        return not path.endswith(".gz")

    def read_from_end(self, target: Target) -> bool:
        return self.from_end

    def reads_rotated_when_new(self, target: Target) -> bool:
        return False


class Parts:
    """Every part of a tailer but the loop, wired as the Tailer wires them."""

    def __init__(self, paths: ListedPaths, saved: dict[str, Entry] | None = None, max_open: int = 64) -> None:
        self.metrics = Metrics()
        self.paths = paths
        self.followed = FollowedFiles()
        self.descriptors = DescriptorCache(max_open, self.metrics, "file_source")
        self.checkpointer = Checkpointer(saved or {}, None, self.metrics, 1.0)
        self.catch_up = CatchUp(self.followed, paths, self.descriptors, self.checkpointer, "backslashreplace")
        self.submitted: list[Chunk] = []
        self.claims_changed = 0
        self.rotation = Rotation(
            self.followed,
            paths,
            self.descriptors,
            self.checkpointer,
            self.catch_up,
            lambda tf, chunk: self.submitted.append(chunk),
            self._claims,
            self.metrics,
            "file_source",
        )

    def _claims(self) -> None:
        self.claims_changed += 1

    def follow(self, tf: TailedFile, open_it: bool = True) -> TailedFile:
        self.followed.add(tf)
        if open_it:
            fd = self.descriptors.open(tf.path)
            assert fd is not None
            self.descriptors.adopt(tf, fd, 0.0)
        return tf

    def error(self, error_type: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "errors_total", {"component": "file_source", "error_type": error_type}
        )
        return value or 0.0

    def close(self) -> None:
        for tf in list(self.followed.tracked.values()):
            tf.close()
