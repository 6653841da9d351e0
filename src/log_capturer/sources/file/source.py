"""The file source: finds files under ``watch_directories`` and follows them.

Discovery (every ``rescan_interval``) walks the directories (recursively
unless ``recursive: false``), skipping ``exclude_directories``, and keeps
regular files whose base name matches ``include_patterns`` and neither base
name nor full path matches ``exclude_patterns`` (compressed files by default).
Following, rotation, copytruncate, descriptors and restarts are the tail
engine's (:mod:`.tailer`).

Positions live in ``positions.directory/files.json`` (format version 2): path
-> ``{offset, size, inode, device, fingerprint, fingerprint_bytes, source_id,
state, last_read, log_count, bytes_read}``; ``state`` is ``rotated`` for a
file renamed away and still being read, whose ``source_id`` is the path its
lines are attributed to. Version 1 files (path -> offset, inode, device, ...)
are converted on load: their entries are matched by device and inode and get
a fingerprint on the first save.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable
from typing import Any

from log_capturer.config.schema import PositionsConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.processing.assembly import Assembler
from log_capturer.processing.multiline import MultilineJoiner, MultilineRule
from log_capturer.record import Origin
from log_capturer.sources.base import BuildContext, SourceComponent
from log_capturer.sources.file.config import FilesConfig
from log_capturer.sources.file.tailer import Entry, TailEngine, TailSettings, Target
from log_capturer.sources.positions import PositionStore
from log_capturer.workers.shard import Shard

log = logging.getLogger(__name__)

POSITIONS_VERSION = 2


def migrate_v1(entries: dict[str, Entry]) -> dict[str, Entry]:
    """Format 1 (path -> offset, inode, device, ...) to 2: every entry was a live file at its path."""
    return {path: {**e, "source_id": path, "state": "live"} for path, e in entries.items()}


#: Version and migrations of files.json (and of the workers' files.worker-N.json).
FORMAT: tuple[int, dict[int, Callable[[dict[str, Entry]], dict[str, Entry]]]] = (
    POSITIONS_VERSION,
    {1: migrate_v1},
)


def multiline_factory(
    rule: MultilineRule | None,
) -> Callable[[], Assembler | None] | None:
    if rule is None:
        return None
    return lambda: MultilineJoiner(rule)


def settings_of(cfg: FilesConfig, read_from: str | None = None, rescan: float | None = None) -> TailSettings:
    return TailSettings(
        poll_interval=cfg.poll_interval,
        rescan_interval=cfg.rescan_interval if rescan is None else rescan,
        read_buffer_bytes=cfg.read_buffer_bytes,
        max_line_bytes=cfg.max_line_bytes,
        read_from=read_from or cfg.read_from,
        encoding_errors=cfg.encoding_errors,
        max_open_files=cfg.max_open_files,
        close_inactive=cfg.close_inactive,
    )


class FileSource(TailEngine):
    name = "file_source"
    positions_key = "files"

    def __init__(
        self,
        config: FilesConfig,
        positions: PositionsConfig,
        dispatcher: Dispatcher,
        metrics: Metrics,
        shard: Shard | None = None,
    ) -> None:
        self.config = config
        self.positions_config = positions
        self.store = (
            PositionStore(positions.directory, shard.positions_name if shard else "files", *FORMAT)
            if positions.enabled
            else None
        )
        if shard is not None and positions.enabled:
            shard.remember_foreign(
                e
                for name in shard.other_positions_names()
                for e in PositionStore(positions.directory, name, *FORMAT).peek().values()
            )
        super().__init__(
            settings_of(config), dispatcher, metrics, self.store.load() if self.store else {}, shard
        )
        self._exclude_dirs = [os.path.abspath(d) for d in config.exclude_directories]
        ml = config.multiline
        self._multiline = (
            MultilineRule.build(
                None if ml.preset == "none" else ml.preset,
                ml.start_pattern,
                ml.continuation_pattern,
                ml.timeout,
                ml.max_lines,
                config.max_line_bytes,
            )
            if ml.enabled
            else None
        )
        self._target_cache: dict[str, Target] = {}

    # -- discovery ---------------------------------------------------------------------------------
    def _matches(self, path: str) -> bool:
        name = os.path.basename(path)
        cfg = self.config
        if not any(fnmatch.fnmatch(name, p) for p in cfg.include_patterns):
            return False
        return not any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in cfg.exclude_patterns)

    def _excluded_dir(self, path: str) -> bool:
        ap = os.path.abspath(path)
        return any(ap == d or ap.startswith(d + os.sep) for d in self._exclude_dirs)

    def _watched(self, path: str) -> bool:
        """Whether ``path`` is inside the watched directories (as discovery would see it)."""
        directory = os.path.dirname(os.path.abspath(path))
        for root in map(os.path.abspath, self.config.watch_directories):
            if directory == root or (self.config.recursive and directory.startswith(root + os.sep)):
                return not self._excluded_dir(directory)
        return False

    def discover(self) -> dict[str, Target]:
        """Regular files under watch_directories that match the patterns."""
        found: dict[str, Target] = {}
        for root in map(os.path.abspath, self.config.watch_directories):
            if self._excluded_dir(root):
                continue
            stack = [root]
            while stack:
                directory = stack.pop()
                try:
                    with os.scandir(directory) as it:
                        entries = list(it)
                except OSError:
                    continue
                for e in entries:
                    if e.is_dir(follow_symlinks=False):
                        if self.config.recursive and not self._excluded_dir(e.path):
                            stack.append(e.path)
                    elif e.is_file() and self._matches(e.path):
                        found[e.path] = self._target(e.path)
        return found

    def _target(self, path: str) -> Target:
        t = self._target_cache.get(path)
        if t is None:
            t = self._target_cache[path] = Target(
                Origin("file", path, dict(self.config.labels)), multiline_factory(self._rule_for(path))
            )
        return t

    def _rule_for(self, path: str) -> MultilineRule | None:
        pats = self.config.multiline.path_patterns
        if self._multiline is None or not pats:
            return self._multiline
        name = os.path.basename(path)
        if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in pats):
            return self._multiline
        return None

    def target_for(self, path: str) -> Target | None:
        if self._matches(path) and self._watched(path):
            return self._target(path)
        return None

    def target_for_source(self, source_id: str) -> Target | None:
        # A rotated file's lines belong to the path it had; it may not exist any more.
        return self._target(source_id) if self._matches(source_id) else None

    def rotated_name_ok(self, path: str) -> bool:
        # A rotated file is read unless exclude_patterns exclude it (compressed files by default).
        name = os.path.basename(path)
        return not any(
            fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in self.config.exclude_patterns
        )

    def update_gauges(self) -> None:
        self.metrics.files_monitored.set(len(self.tracked))
        live = set(self.by_path)
        for path in [p for p in self._target_cache if p not in live and p not in self.targets]:
            del self._target_cache[path]

    # -- reporting -------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {
            **super().health(),
            "files": len(self.files()),
            "rotated_files_draining": len(self.files(live=False)),
            "open_files": self.open_files,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "monitored": len(self.files()),
            "rotated_draining": len(self.files(live=False)),
            "open_files": self.open_files,
            "lines_read": self.lines_read,
            "in_flight_lines": self.in_flight(),
            "lag_bytes": self.lag_bytes(),
        }

    def positions(self) -> dict[str, Entry]:
        return self.position_entries()

    # -- positions ---------------------------------------------------------------------------------
    def flush_interval(self) -> float:
        return self.positions_config.flush_interval

    def save_positions(self) -> None:
        if self.store is None:
            return
        self.refresh_rotated_paths()
        try:
            self.store.save(self.position_entries())
        except OSError as exc:
            log.error("cannot save positions to %s: %s", self.store.path, exc)
            self.metrics.errors.labels("positions", "save_failed").inc()


def build(config: FilesConfig, ctx: BuildContext) -> FileSource | None:
    if not config.enabled or not config.watch_directories:
        return None
    return FileSource(config, ctx.config.positions, ctx.dispatcher, ctx.metrics, ctx.shard("files"))


COMPONENT = SourceComponent(
    build=build,
    stats_key="files",
    idle_stats={
        "monitored": 0,
        "rotated_draining": 0,
        "open_files": 0,
        "lines_read": 0,
        "in_flight_lines": 0,
        "lag_bytes": {},
    },
    # Files' chunks name no pipeline: theirs goes by source_type.
    pipelines=lambda config: {"file": config.pipeline} if config.pipeline else {},
)
