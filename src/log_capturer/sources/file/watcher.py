"""File change notification for the tailer: inotify where it works, polling where it does not.

With ``watcher: poll`` the tailer looks at every followed file at every turn (a ``stat`` or
``fstat`` each ``poll_interval`` at most), so an idle agent's cost grows with the number of
files. With inotify (``watcher: auto``, the default, or ``inotify``) the kernel tells which
files changed: the directories of the followed files are watched (one watch per directory,
not per file), and a turn looks only at the files named by an event, the files that were
still being read, the rotated files being drained and the files that must be polled. Events
that change a directory (a file created, renamed or deleted) ask for a discovery.

Polling stays where inotify cannot see:

- a directory whose watch cannot be added (the ``fs.inotify.max_user_watches`` limit, or a
  file system without inotify support) is polled as before, as Fluent Bit does without its
  ``inotify_watcher``;
- a followed path that is a symbolic link (its writes are reported in the directory of its
  target);
- with ``auto``, no inotify instance at all (``fs.inotify.max_user_instances`` reached, a
  kernel without inotify): the whole source polls.

A missed event never loses a line: every followed file is still looked at once per
``restat_interval`` (a slow safety re-stat, spread over the turns), and an event queue
overflow makes the next turn look at every file and run a discovery.

The watcher's thread only reads events and records the paths they name; the tailer's read
thread takes them (:meth:`InotifyWatcher.take`) and does all the reading.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from log_capturer.sources.base import SourceStartError

log = logging.getLogger(__name__)

# The inotify event bits (linux/inotify.h).
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000

#: What a directory watch asks for: the contents changed, or the directory itself changed.
CONTENT = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE
STRUCTURE = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF
MASK = CONTENT | STRUCTURE | IN_ONLYDIR

#: How long a stop waits for the event thread (woken at once through its pipe).
CLOSE_TIMEOUT = 1.0
#: After the first event of a burst, wait this long before reading, so the kernel merges the
#: repeated writes to one file into one event (fewer events to decode while files are busy).
READ_DELAY_MS = 1

WATCHERS = ("auto", "inotify", "poll")


class WatcherError(SourceStartError):
    """``watcher: inotify`` was asked for and inotify cannot be used here (the message says why)."""


@dataclass
class Changes:
    """What happened since the last :meth:`InotifyWatcher.take`."""

    #: Paths named by an event (files in a watched directory).
    paths: set[str] = field(default_factory=set)
    #: A file was created, renamed or deleted, or a watched directory went: run a discovery.
    structure: bool = False
    #: The kernel dropped events (queue overflow): every file must be looked at.
    overflow: bool = False


class InotifyWatcher:
    """Directory watches over one inotify instance, and a thread that reads their events.

    ``wake`` is called (on the event thread) after events were recorded; the tailer sets its
    loop's event with it.
    """

    mode = "inotify"

    def __init__(self, name: str, wake: Callable[[], None]) -> None:
        from inotify_simple import INotify

        self._inotify = INotify()  # OSError: no instance left, or no inotify in this kernel
        # The event thread sleeps in poll() on the inotify descriptor and this pipe, with no
        # timeout: no wake-up while nothing happens, and a stop wakes it at once.
        try:
            self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            self._inotify.close()
            raise
        self._closed = False
        self._poller = select.poll()
        self._poller.register(self._inotify.fileno(), select.POLLIN)
        self._poller.register(self._stop_r, select.POLLIN)
        self.name = name
        self._wake = wake
        self._lock = threading.Lock()
        self._changes = Changes()
        #: Watch descriptor -> directory, and back.
        self._dirs: dict[int, str] = {}
        self._wds: dict[str, int] = {}
        #: Directories that could not be watched: their files are polled.
        self.unwatched: set[str] = set()
        #: Counts the changes to the set of watched directories.
        self.version = 0
        self._limit_logged = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"{name}-inotify".replace("_", "-"), daemon=True
        )
        self._thread.start()

    # -- the read thread's side ------------------------------------------------------------------
    def watch(self, directories: Iterable[str]) -> None:
        """Watch exactly ``directories`` (add the new ones, drop the others)."""
        wanted = set(directories)
        with self._lock:
            for directory in [d for d in self._wds if d not in wanted]:
                wd = self._wds.pop(directory)
                self._dirs.pop(wd, None)
                self.version += 1
                with contextlib.suppress(OSError):  # the directory went: its watch went with it
                    self._inotify.rm_watch(wd)
            self.unwatched &= wanted
            for directory in wanted:
                if directory not in self._wds and directory not in self.unwatched:
                    self._add(directory)

    def _add(self, directory: str) -> None:
        try:
            wd: int = self._inotify.add_watch(directory, MASK)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return  # not there (yet): tried again at the next discovery
            self.unwatched.add(directory)
            if exc.errno == errno.ENOSPC:
                if not self._limit_logged:
                    self._limit_logged = True
                    log.warning(
                        "inotify watch limit reached: the files of further directories are polled; "
                        "raise fs.inotify.max_user_watches (sysctl) to watch them",
                        extra={"directory": directory, "watches": len(self._wds)},
                    )
            else:
                log.info(
                    "directory cannot be watched with inotify: its files are polled",
                    extra={"directory": directory, "error": exc.strerror},
                )
            return
        old = self._dirs.get(wd)
        if old is not None and old != directory:
            self._wds.pop(old, None)  # the same directory under another name (a bind or a rename)
        self._dirs[wd] = directory
        self._wds[directory] = wd
        self.version += 1

    @property
    def watched(self) -> dict[str, int]:
        """The watched directories (to their watch descriptors); read-only for the caller."""
        return self._wds

    def watches(self, directory: str) -> bool:
        """Whether events for the files of ``directory`` arrive."""
        return directory in self._wds

    def take(self) -> Changes:
        """The changes recorded since the last call (and start recording anew)."""
        with self._lock:
            changes, self._changes = self._changes, Changes()
        return changes

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        self._thread.join(CLOSE_TIMEOUT)
        if self._thread.is_alive():
            return  # (never seen) its descriptors stay open rather than be reused under it
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self._inotify.close()

    # -- the event thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poller.poll()
                if self._stop.is_set():
                    return
                time.sleep(READ_DELAY_MS / 1000)
                events = list(self._inotify.read(timeout=0))
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                log.exception("reading inotify events failed; the files are polled")
                with self._lock:
                    self._changes.overflow = True
                    self._wds.clear()
                    self._dirs.clear()
                    self.version += 1
                self._wake()
                return
            if events:
                self.record([(e.wd, e.mask, e.name) for e in events])

    def record(self, events: list[tuple[int, int, str]]) -> None:
        """Record decoded events ``(wd, mask, name)`` and wake the tailer."""
        with self._lock:
            changes = self._changes
            dirs = self._dirs
            paths = changes.paths
            for wd, mask, name in events:
                if mask & IN_Q_OVERFLOW:
                    changes.overflow = True
                    changes.structure = True
                    continue
                directory = dirs.get(wd)
                if directory is None:
                    continue
                if mask & IN_IGNORED:  # the directory was deleted or unmounted
                    del dirs[wd]
                    if self._wds.get(directory) == wd:
                        del self._wds[directory]
                        self.version += 1
                    changes.structure = True
                    continue
                if mask & STRUCTURE:
                    changes.structure = True
                if name:
                    paths.add(os.path.join(directory, name))
        self._wake()


def open_watcher(mode: str, name: str, wake: Callable[[], None]) -> InotifyWatcher | None:
    """The watcher for ``watcher: mode`` (None: poll every file, as ``poll`` asks or as ``auto``
    falls back to when inotify cannot be used). :class:`WatcherError` when ``inotify`` was asked
    for and cannot be had."""
    if mode == "poll":
        return None
    try:
        return InotifyWatcher(name, wake)
    except (OSError, ImportError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if mode == "inotify":
            raise WatcherError(
                f"inotify cannot be used ({reason}); raise fs.inotify.max_user_instances, "
                "or set files_config.watcher to auto or poll"
            ) from None
        log.warning("inotify cannot be used: every followed file is polled", extra={"reason": reason})
        return None
