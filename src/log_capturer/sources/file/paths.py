"""Paths providers: which paths the tailer follows, and how their lines become records.

A :class:`PathsProvider` is the tailer's discovery (Vector's ``paths_provider``).
The tailer calls :meth:`~PathsProvider.discover` every ``rescan_interval`` (and
when a source asks for a rescan) and follows the *files* behind the paths it
returns; the other methods answer the questions rotation and restarts ask
about paths the last discovery did not return. The file source's provider is
:class:`GlobPaths` (``watch_directories`` and the patterns); the container
source has its own (the log files of Docker containers and Kubernetes pods).

A provider only names paths: it never opens a file, and it is called from the
tailer's read thread only.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from log_capturer.processing.assembly import Assembler
from log_capturer.processing.multiline import MultilineJoiner, MultilineRule
from log_capturer.record import Origin
from log_capturer.sources.file.config import FilesConfig

#: Rotated files with these suffixes are compressed: they are never read.
COMPRESSED = (".gz", ".zip", ".bz2", ".xz", ".zst", ".lz4")


@dataclass(frozen=True)
class Target:
    """A path a source wants followed, and how to make records from its lines."""

    origin: Origin
    assembler: Callable[[], Assembler | None] | None = None

    def new_assembler(self) -> Assembler | None:
        """A fresh assembler for one file of this target (None: lines are records)."""
        return self.assembler() if self.assembler is not None else None


class PathsProvider(Protocol):
    """What the tailer asks a source about paths."""

    def discover(self) -> dict[str, Target]:
        """Every path to follow now, with its target (a path that names no regular file is skipped)."""

    def target_for(self, path: str) -> Target | None:
        """The target for ``path`` if it is a path to follow (the new name of a renamed file)."""

    def target_for_source(self, source_id: str) -> Target | None:
        """The target whose records carry ``source_id`` (a rotated file resumed after a restart)."""

    def rotated_name_ok(self, path: str) -> bool:
        """Whether a rotated generation at ``path`` may be read (not compressed, not excluded)."""

    def read_from_end(self, target: Target) -> bool:
        """Whether a file found at start-up with no saved position starts at its end."""

    def reads_rotated_when_new(self, target: Target) -> bool:
        """Whether the rotated generations next to a path seen for the first time after start-up
        are read too (a new container's log: all of it was written since it started)."""


def multiline_factory(rule: MultilineRule | None) -> Callable[[], Assembler | None] | None:
    if rule is None:
        return None
    return lambda: MultilineJoiner(rule)


def _any_of(patterns: list[str]) -> re.Pattern[str] | None:
    """One expression matching what any of the shell-style ``patterns`` matches (as
    ``fnmatch.fnmatch`` on POSIX, case-sensitive); None without patterns."""
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns))


class GlobPaths:
    """The file source's paths: regular files under ``watch_directories`` that match the patterns.

    The walk is recursive unless ``recursive: false``, skips ``exclude_directories``, and keeps
    files whose base name matches ``include_patterns`` and neither base name nor full path
    matches ``exclude_patterns``. A path's records carry ``source_type: file``, the path as
    ``source_id`` and the section's ``labels``; the multiline rule applies to the paths that
    ``multiline.path_patterns`` select (all of them when it is empty).
    """

    def __init__(self, config: FilesConfig) -> None:
        self.config = config
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
        #: One target per path (and so one Origin), kept while the path is discovered.
        self._targets: dict[str, Target] = {}
        #: Whether a path's name matches the patterns (they do not change): a search of
        #: thousands of files costs no pattern matching once they are known.
        self._matched: dict[str, bool] = {}
        #: The inode number each path named at the last search (from the directory listing, no
        #: ``stat``; a symbolic link's own): the tailer stats only the paths whose file changed.
        self.inodes: dict[str, int] = {}
        #: Every directory the last search listed (with inotify each is watched, so a file created
        #: in a sub-directory with no log file yet is seen at once too).
        self.walked: list[str] = []
        #: The patterns as one expression each (``fnmatch``'s, one match per name instead of one
        #: per pattern: 10,000 new names at start-up are matched in milliseconds).
        self._include = _any_of(config.include_patterns) or re.compile(r"(?!)")
        self._exclude = _any_of(config.exclude_patterns)

    def _matches(self, path: str) -> bool:
        known = self._matched.get(path)
        if known is None:
            known = self._matched[path] = self._match(path)
        return known

    def _match(self, path: str) -> bool:
        name = os.path.basename(path)
        if not self._include.match(name):
            return False
        exclude = self._exclude
        return exclude is None or not (exclude.match(name) or exclude.match(path))

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

    def watch_roots(self) -> list[str]:
        """The directories to watch besides those of the paths found: every directory the last
        search listed (a file created in an empty one is then seen at once)."""
        return self.walked

    def discover(self) -> dict[str, Target]:
        found: dict[str, Target] = {}
        seen: list[str] = []
        inodes = self.inodes = {}
        walked: list[str] = []
        self.walked = walked
        for root in map(os.path.abspath, self.config.watch_directories):
            if self._excluded_dir(root):
                continue
            stack = [root]
            while stack:
                directory = stack.pop()
                walked.append(directory)
                try:
                    with os.scandir(directory) as it:
                        entries = list(it)
                except OSError:
                    continue
                for e in entries:
                    if e.is_dir(follow_symlinks=False):
                        if self.config.recursive and not self._excluded_dir(e.path):
                            stack.append(e.path)
                    elif e.is_file():
                        seen.append(e.path)
                        inodes[e.path] = e.inode()
                        if self._matches(e.path):
                            found[e.path] = self._target(e.path)
        for path in [p for p in self._targets if p not in found]:
            del self._targets[path]
        if len(self._matched) > 2 * len(seen) + 1000:  # names that went
            self._matched = {p: self._matched[p] for p in seen if p in self._matched}
        return found

    def _target(self, path: str) -> Target:
        t = self._targets.get(path)
        if t is None:
            t = self._targets[path] = Target(
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

    def read_from_end(self, target: Target) -> bool:
        return self.config.read_from == "end"

    def reads_rotated_when_new(self, target: Target) -> bool:
        # A new path's rotated neighbours are history (written before it was watched).
        return False
