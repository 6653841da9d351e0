"""The file source: finds files under ``watch_directories`` and follows them.

The source is a :class:`~.tailer.Tailer` built from two parts: its paths
provider, :class:`~.paths.GlobPaths` (discovery, every ``rescan_interval``:
the directories walked recursively unless ``recursive: false``, skipping
``exclude_directories``, keeping regular files whose base name matches
``include_patterns`` and neither base name nor full path matches
``exclude_patterns``, compressed files by default), and its checkpointer
(:mod:`.checkpointer`) over ``files.json``. Following, rotation,
copytruncate, descriptors and restarts are the tailer's.

Positions live in ``positions.directory/files.json`` (format version 2): path
-> ``{offset, size, inode, device, fingerprint, fingerprint_bytes, source_id,
state, last_read, log_count, bytes_read}``; ``state`` is ``rotated`` for a
file renamed away and still being read, whose ``source_id`` is the path its
lines are attributed to. Version 1 files (path -> offset, inode, device, ...)
are converted on load: their entries are matched by device and inode and get
a fingerprint on the first save.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from log_capturer.config.schema import PositionsConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.sources.base import BuildContext, SourceComponent
from log_capturer.sources.file.checkpointer import Checkpointer, Entry
from log_capturer.sources.file.config import FilesConfig
from log_capturer.sources.file.paths import GlobPaths
from log_capturer.sources.file.tail import TailedFile
from log_capturer.sources.file.tailer import Tailer, TailSettings
from log_capturer.sources.positions import PositionStore
from log_capturer.workers.shard import Shard

POSITIONS_VERSION = 2


def migrate_v1(entries: dict[str, Entry]) -> dict[str, Entry]:
    """Format 1 (path -> offset, inode, device, ...) to 2: every entry was a live file at its path."""
    return {path: {**e, "source_id": path, "state": "live"} for path, e in entries.items()}


#: Version and migrations of files.json (and of the workers' files.worker-N.json).
FORMAT: tuple[int, dict[int, Callable[[dict[str, Entry]], dict[str, Entry]]]] = (
    POSITIONS_VERSION,
    {1: migrate_v1},
)


def settings_of(cfg: FilesConfig, rescan: float | None = None) -> TailSettings:
    return TailSettings(
        poll_interval=cfg.poll_interval,
        rescan_interval=cfg.rescan_interval if rescan is None else rescan,
        read_buffer_bytes=cfg.read_buffer_bytes,
        max_line_bytes=cfg.max_line_bytes,
        encoding_errors=cfg.encoding_errors,
        max_open_files=cfg.max_open_files,
        close_inactive=cfg.close_inactive,
        watcher=cfg.watcher,
        restat_interval=cfg.restat_interval,
    )


class FileSource:
    """Follows the files that :class:`GlobPaths` finds, with a :class:`Tailer`."""

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
        self.metrics = metrics
        store = (
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
        checkpointer = Checkpointer(
            store.load() if store else {},
            store,
            metrics,
            positions.flush_interval,
            write_delay=positions.write_delay,
        )
        self.tailer = Tailer(
            self.name,
            settings_of(config),
            GlobPaths(config),
            checkpointer,
            dispatcher,
            metrics,
            shard,
            after_rescan=self._set_gauges,
        )

    def _set_gauges(self) -> None:
        self.metrics.files_monitored.set(len(self.tailer.followed.tracked))

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.tailer.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop reading (nothing is buffered: what is not read stays in the files)."""
        self.tailer.stop()

    def finish(self) -> None:
        self.tailer.finish()

    # -- reporting -------------------------------------------------------------------------------
    def files(self, live: bool = True) -> list[TailedFile]:
        return self.tailer.files(live)

    def health(self) -> dict[str, Any]:
        t = self.tailer
        return {
            **t.health(),
            "files": len(t.files()),
            "rotated_files_draining": len(t.files(live=False)),
            "open_files": t.open_files,
        }

    def stats(self) -> dict[str, Any]:
        t = self.tailer
        return {
            "monitored": len(t.files()),
            "rotated_draining": len(t.files(live=False)),
            "open_files": t.open_files,
            "lines_read": t.lines_read,
            "in_flight_lines": t.in_flight(),
            "lag_bytes": t.lag_bytes(),
            "watcher": t.watcher_mode,
            "polled_files": t.polled_files,
        }

    def positions(self) -> dict[str, Entry]:
        return self.tailer.positions()

    def resume_from(self, entries: dict[str, Entry]) -> None:
        """Resume from ``entries`` (the positions a sink commits with the lines, Kafka's
        ``delivery: exactly_once``) instead of ``files.json``, which is then neither read nor
        written: a position saved there could count lines of a transaction not committed yet.
        Call before :meth:`start`.

        One worker of several keeps the entries of its own files (its shard) and remembers the
        others as files not to take (another worker follows them), as it does with the other
        workers' positions files."""
        cp = self.tailer.checkpointer
        shard = self.tailer.shard
        if shard is not None:
            own = {name: e for name, e in entries.items() if shard.owns(_source_id(name, e))}
            shard.remember_foreign(e for name, e in entries.items() if name not in own)
            entries = own
        cp.unclaimed = Checkpointer(entries, None, self.metrics, cp.flush_interval).unclaimed
        cp.store = None
        cp.writer = None  # its thread starts with the first write: none comes


def _source_id(name: str, entry: Entry) -> str:
    sid = entry.get("source_id")
    return sid if isinstance(sid, str) and sid else name


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
