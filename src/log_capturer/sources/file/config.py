"""The ``files_config`` section: the file source."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from log_capturer.config.base import Duration, Strict
from log_capturer.processing.config import FileMultilineConfig


class FilesConfig(Strict):
    enabled: bool = Field(True, description="Tail files under watch_directories.")
    watch_directories: list[str] = Field(
        default_factory=list, description="Directories to search for log files."
    )
    include_patterns: list[str] = Field(
        default_factory=lambda: ["*.log"],
        description="Glob patterns a file's name must match (fnmatch, on the base name).",
    )
    exclude_patterns: list[str] = Field(
        default_factory=lambda: ["*.gz", "*.zip", "*.bz2", "*.xz", "*.zst", "*.lz4"],
        description="Glob patterns that exclude a file (base name or full path); "
        "compressed files by default.",
    )
    exclude_directories: list[str] = Field(
        default_factory=list, description="Directories (and everything below them) never searched."
    )
    recursive: bool = Field(True, description="Search sub-directories of watch_directories.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Static labels added to every record from files (e.g. tenant_id for the key).",
    )
    read_from: Literal["beginning", "end"] = Field(
        "beginning",
        description="Where to start in a file found at start-up that has no saved position. Files "
        "that appear later are always read from their beginning.",
    )
    poll_interval: Duration = Field(
        0.1,
        description="Longest wait between two looks at the files for new data. After a look that "
        "found data the next one comes after 5 ms, and the wait doubles while nothing new arrives, "
        "up to this value: busy files are read with little delay, idle ones cost little.",
    )
    watcher: Literal["auto", "inotify", "poll"] = Field(
        "auto",
        description="How changes to the followed files are noticed. 'inotify': the kernel's file "
        "change notification (one watch per directory listed); a turn looks only at the files that "
        "changed, so idle files cost little (10,000 idle files: about 1.3 % of a core against 19-32 % "
        "polling, see BENCHMARKS.md). Directories that cannot be "
        "watched (fs.inotify.max_user_watches reached, a file system without inotify) and "
        "symbolic links are polled every poll_interval; start-up fails when no inotify instance "
        "can be had. 'auto' (default): inotify, and every file polled where it cannot be had. "
        "'poll': every followed file is looked at every poll_interval; use it on network file "
        "systems (NFS, SMB), where writes made on other hosts raise no event.",
    )
    restat_interval: Duration = Field(
        10.0,
        gt=0,
        description="With inotify: every followed file is still looked at this often, whether an "
        "event came or not (spread over the turns), so a missed event delays a line, never loses it; "
        "the directories are searched this often too while all of them are watched. "
        "Each look is one stat per file: a shorter interval costs CPU with many files.",
    )
    rescan_interval: Duration = Field(
        5.0,
        description="How often watch_directories are searched for new, rotated or removed files. "
        "With inotify a file or directory created, renamed or deleted in a listed directory "
        "starts a search at once (at most twice a second), so while every listed directory is "
        "watched the periodic search is only a safety net and runs every restat_interval "
        "(at least every rescan_interval).",
    )
    read_buffer_bytes: int = Field(
        1 << 20, ge=4096, le=64 << 20, description="Largest read from one file in one go."
    )
    max_line_bytes: int = Field(
        1 << 20,
        ge=256,
        description="Longest line kept whole; longer lines are truncated to this size and marked "
        "'truncated: true' in the record (counted in metrics).",
    )
    pipeline: str = Field(
        "", description="Processing pipeline (a name in processing.pipelines_file) for lines from files."
    )
    encoding_errors: Literal["backslashreplace", "replace"] = Field(
        "backslashreplace",
        description="What becomes of bytes that are not valid UTF-8: 'backslashreplace' keeps them "
        "as \\xNN escapes (nothing lost), 'replace' writes U+FFFD instead.",
    )
    max_open_files: int = Field(
        256,
        ge=8,
        description="Most log files held open at once. Beyond it, the least recently read files are "
        "closed and watched by path, and reopened (checked by device, inode and fingerprint) when "
        "they grow. Rotated files still being read keep their descriptor.",
    )
    close_inactive: Duration = Field(
        300.0,
        description="Close a file that has not grown for this long (it is reopened when it grows).",
    )
    multiline: FileMultilineConfig = Field(default_factory=FileMultilineConfig)

    @model_validator(mode="after")
    def _check(self) -> FilesConfig:
        if self.enabled and not self.include_patterns:
            raise ValueError("include_patterns is empty, so no file would ever match; add e.g. '*.log'")
        return self
