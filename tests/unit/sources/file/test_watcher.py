"""The inotify watcher, and the tailer with it: events, the polling fallback, the safety re-stat."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from log_capturer.config.schema import FilesConfig, PositionsConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.sources.file.source import FileSource
from log_capturer.sources.file.watcher import InotifyWatcher
from log_capturer.sources.supervise import Backoff
from tests.unit.sources.harness import MemorySink, make_dispatcher


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


@pytest.fixture
def watcher() -> Iterator[tuple[InotifyWatcher, threading.Event]]:
    woken = threading.Event()
    w = InotifyWatcher("file_source", woken.set)
    yield w, woken
    w.close()


def test_events_name_the_files_written_and_say_when_a_directory_changed(
    tmp_path: Path, watcher: tuple[InotifyWatcher, threading.Event]
) -> None:
    w, woken = watcher
    a = tmp_path / "a.log"
    a.write_text("one\n")
    w.watch([str(tmp_path)])
    assert w.watches(str(tmp_path))
    w.take()
    with a.open("a") as f:
        f.write("two\n")
    assert woken.wait(5)
    assert wait_for(lambda: str(a) in w._changes.paths)
    changes = w.take()
    assert str(a) in changes.paths and not changes.structure and not changes.overflow
    assert w.take().paths == set()  # taken once

    (tmp_path / "b.log").write_text("new\n")
    assert wait_for(lambda: w._changes.structure)
    changes = w.take()
    assert changes.structure and str(tmp_path / "b.log") in changes.paths

    a.rename(tmp_path / "a.log.1")
    assert wait_for(lambda: w._changes.structure)
    assert {str(a), str(tmp_path / "a.log.1")} <= w.take().paths

    # Its thread sleeps with no timeout (no wake-up while idle) and a stop wakes it at once.
    started = time.monotonic()
    w.close()
    assert not w._thread.is_alive() and time.monotonic() - started < 0.5
    w.close()  # twice: nothing more


def test_directories_no_longer_named_are_unwatched_and_unwatchable_ones_are_polled(
    tmp_path: Path, watcher: tuple[InotifyWatcher, threading.Event]
) -> None:
    w, _ = watcher
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    w.watch([str(one), str(two), str(not_a_dir), str(tmp_path / "missing")])
    assert w.watches(str(one)) and w.watches(str(two))
    # A path inotify refuses (here: not a directory) is polled; a missing one is tried again later.
    assert w.unwatched == {str(not_a_dir)}
    w.watch([str(one)])
    assert w.watches(str(one)) and not w.watches(str(two)) and not w.unwatched
    (two / "x.log").write_text("x\n")
    time.sleep(0.1)
    assert w.take().paths == set()


def test_a_deleted_directory_asks_for_a_discovery(
    tmp_path: Path, watcher: tuple[InotifyWatcher, threading.Event]
) -> None:
    w, _ = watcher
    sub = tmp_path / "sub"
    sub.mkdir()
    w.watch([str(sub)])
    sub.rmdir()
    assert wait_for(lambda: w._changes.structure)
    assert wait_for(lambda: not w.watches(str(sub)))


FALLBACK = """
import errno, logging, os, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
from log_capturer.sources.file.watcher import WatcherError, open_watcher
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as exc:
    assert exc.errno == errno.EMFILE
os.close(fds.pop())  # one left for the inotify module's import, none after it
import inotify_simple
fds.append(os.open("/dev/null", os.O_RDONLY))
print("auto ->", open_watcher("auto", "file_source", lambda: None))
try:
    open_watcher("inotify", "file_source", lambda: None)
except WatcherError as exc:
    print("inotify ->", exc)
print("poll ->", open_watcher("poll", "file_source", lambda: None))
"""


def test_without_an_inotify_instance_auto_polls_and_inotify_fails_with_the_fix() -> None:
    # A real failure of inotify_init1: the process has no descriptor left (EMFILE).
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n" + FALLBACK,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "inotify cannot be used: every followed file is polled" in lines
    assert "auto -> None" in lines
    assert any(
        line.startswith("inotify -> inotify cannot be used (")
        and "files_config.watcher to auto or poll" in line
        for line in lines
    ), lines
    assert "poll -> None" in lines


# -- the tailer with inotify --------------------------------------------------------------------------


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.sink = MemorySink()
        self.metrics = Metrics()
        self.dispatcher: Dispatcher = make_dispatcher(self.sink, self.metrics)
        self.source: FileSource | None = None

    def start(self, **files: Any) -> FileSource:
        cfg = FilesConfig(watch_directories=[str(self.logs)], **files)
        src = FileSource(cfg, PositionsConfig(directory=str(self.tmp / "pos")), self.dispatcher, self.metrics)
        src.start()
        self.source = src
        return src

    def close(self) -> None:
        if self.source is not None:
            self.source.stop()
            self.source.finish()
        self.dispatcher.close(5)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.close()


def append(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))


def test_with_inotify_idle_files_are_not_looked_at_and_a_written_one_is_read_at_once(env: Env) -> None:
    files = [env.logs / f"f{i}.log" for i in range(50)]
    for p in files:
        p.write_text("")
    # Polling and the safety re-stat would take a minute: only the event can bring the line soon.
    src = env.start(poll_interval="60s", restat_interval="60s", rescan_interval="60s")
    t = src.tailer
    assert t.watcher is not None and t.watcher.watches(str(env.logs))
    assert not t._special  # every file is covered by an event
    time.sleep(0.3)
    append(files[7], "hello")
    assert wait_for(lambda: env.sink.lines() == ["hello"], 5)
    # A new file is found through the directory's event, not the 60 s discovery.
    append(env.logs / "new.log", "born")
    assert wait_for(lambda: sorted(env.sink.lines()) == ["born", "hello"], 5)


def test_a_missed_event_is_caught_by_the_safety_restat(env: Env) -> None:
    other = env.tmp / "elsewhere"
    other.mkdir()
    followed = env.logs / "app.log"
    followed.write_text("")
    os.link(followed, other / "alias")  # the same file under an unwatched name
    src = env.start(poll_interval="60s", restat_interval="1s", rescan_interval="60s")
    assert src.tailer.watcher is not None
    time.sleep(0.2)
    started = time.monotonic()
    append(other / "alias", "through the other name")  # the event is in `elsewhere`, not watched
    assert wait_for(lambda: env.sink.lines() == ["through the other name"], 5)
    assert time.monotonic() - started <= 3.0


def test_the_safety_restat_hands_only_the_files_that_changed_to_the_turn(env: Env) -> None:
    files = [env.logs / f"f{i}.log" for i in range(40)]
    for p in files:
        p.write_text("x\n")
    other = env.tmp / "elsewhere"
    other.mkdir()
    os.link(files[3], other / "alias")  # the same file under an unwatched name
    src = env.start(poll_interval="60s", restat_interval="200ms", rescan_interval="60s", max_open_files=20)
    t = src.tailer
    assert wait_for(lambda: len(env.sink.lines()) == 40)
    looked: list[str] = []
    real = t._pump

    def pump(tf: Any, now: float) -> bool:
        looked.append(tf.path)
        return real(tf, now)

    t._pump = pump  # type: ignore[method-assign]
    time.sleep(0.6)  # three rounds of the re-stat over idle files (open and closed ones)
    assert looked == []
    append(other / "alias", "y")  # no event in the watched directory: the re-stat sees it
    assert wait_for(lambda: "y" in env.sink.lines(), 2)
    assert set(looked) == {str(files[3])}


def test_a_symbolic_link_is_polled_every_turn(env: Env) -> None:
    real = env.tmp / "real"
    real.mkdir()
    target = real / "target.log"
    target.write_text("")
    (env.logs / "link.log").symlink_to(target)
    src = env.start(poll_interval="50ms", restat_interval="60s", rescan_interval="60s")
    t = src.tailer
    assert [tf.path for tf in t.files()] == [str(env.logs / "link.log")]
    assert {tf.key for tf in t.files()} == t._special  # no event comes for it
    append(target, "via the link")
    assert wait_for(lambda: env.sink.lines() == ["via the link"], 2)


def test_rename_and_create_rotation_keeps_every_line_with_inotify(env: Env) -> None:
    log = env.logs / "app.log"
    log.write_text("")
    env.start(restat_interval="60s", rescan_interval="60s")
    expected: list[str] = []
    for gen in range(5):
        lines = [f"gen {gen} line {i}" for i in range(200)]
        append(log, *lines[:100])
        log.rename(env.logs / f"app.log.{gen}")
        append(env.logs / f"app.log.{gen}", *lines[100:])  # still written after the rename
        log.write_text("")
        expected += lines
    assert wait_for(lambda: len(env.sink.lines()) >= len(expected), 10)
    time.sleep(0.2)
    assert sorted(env.sink.lines()) == sorted(expected)
    assert not env.sink.duplicates()


def test_after_a_crash_of_the_read_loop_every_file_is_looked_at_without_waiting_for_an_event(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = env.logs / "app.log"
    path.write_text("")
    real = env.dispatcher.submit_many
    calls = [0]

    def submit_many(*args: Any, **kwargs: Any) -> int:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("injected crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(env.dispatcher, "submit_many", submit_many)
    cfg = FilesConfig(
        watch_directories=[str(env.logs)], poll_interval="60s", restat_interval="60s", rescan_interval="60s"
    )
    src = FileSource(cfg, PositionsConfig(directory=str(env.tmp / "pos")), env.dispatcher, env.metrics)
    src.tailer.supervisor.backoff = Backoff(0.01, 0.01)
    env.source = src
    src.start()
    time.sleep(0.3)  # the empty file was looked at: from now on only events bring it up
    lines = [f"line {i}" for i in range(300)]
    append(path, *lines)  # its event's read crashes while handing the chunk over
    assert wait_for(lambda: src.tailer.supervisor.restarts == 1, 5)
    # Nothing is written after the crash: only the look at every file after the restart reads them.
    assert wait_for(lambda: len(env.sink.lines()) >= len(lines), 3)
    assert sorted(env.sink.lines()) == sorted(lines)


def test_a_file_in_a_new_sub_directory_is_found_through_events(env: Env) -> None:
    env.start(poll_interval="60s", restat_interval="60s", rescan_interval="60s")
    sub = env.logs / "team" / "svc"
    sub.mkdir(parents=True)
    # Written at once: found by the search the mkdir event starts, through the new directory's
    # watch, or by the search that follows new watches.
    append(sub / "app.log", "deep")
    assert wait_for(lambda: env.sink.lines() == ["deep"], 3)


def test_a_file_made_between_a_new_directory_s_listing_and_its_watch_is_found_by_one_more_search(
    env: Env,
) -> None:
    src = env.start(poll_interval="60s", restat_interval="60s", rescan_interval="60s")
    t = src.tailer
    assert t.watcher is not None
    sub = env.logs / "svc"
    real_watch = t.watcher.watch

    def watch(directories: Any) -> None:
        directories = list(directories)
        if str(sub) in directories and not (sub / "app.log").exists():
            append(sub / "app.log", "between")  # listed already, not watched yet: no event
        real_watch(directories)

    t.watcher.watch = watch  # type: ignore[method-assign]
    sub.mkdir()
    # Neither the 60 s search nor the 60 s re-stat: only the search that follows new watches.
    assert wait_for(lambda: env.sink.lines() == ["between"], 3)


def test_with_every_directory_watched_the_periodic_search_and_the_idle_loop_slow_down(env: Env) -> None:
    (env.logs / "a.log").write_text("")
    t = env.start(poll_interval="100ms", restat_interval="20s", rescan_interval="5s").tailer
    assert t.watcher is not None and not t._special
    # Creations, renames and deletions start a search: the periodic one is a safety net.
    assert t._scan_interval() == 20.0 and t._idle_cap() == 2.0
    t.watcher.unwatched.add(str(env.tmp / "elsewhere"))  # a directory that could not be watched
    assert t._scan_interval() == 5.0
    t.watcher.unwatched.clear()
    missing = env.logs / "later"  # a listed directory not there (yet): no watch, no event for it
    t.paths.walked.append(str(missing))  # type: ignore[attr-defined]
    assert t._scan_interval() == 5.0
    t.paths.walked.remove(str(missing))  # type: ignore[attr-defined]
    t._special.add((0, 0))  # a file that is polled (a symbolic link, multiline lines held)
    assert t._idle_cap() == 0.1
    t._special.clear()
    t.watcher, watcher = None, t.watcher  # polling: as configured
    try:
        assert t._scan_interval() == 5.0 and t._idle_cap() == 0.1
    finally:
        t.watcher = watcher


WATCH_LIMIT = """
import logging, sys, tempfile, time
from pathlib import Path
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
from tests.unit.sources.file.test_watcher import Env, append, wait_for
env = Env(Path(tempfile.mkdtemp()))
for d in range(6):
    (env.logs / f"d{d}").mkdir()
    (env.logs / f"d{d}" / "app.log").write_text("")
src = env.start(poll_interval="50ms", restat_interval="60s", rescan_interval="60s")
t = src.tailer
print("watched", len(t.watcher._wds), "unwatched", len(t.watcher.unwatched))
# Every file of a directory that is not watched is polled, and only those.
print("polled as unwatched:", t.polled_files == len(t.watcher.unwatched - {str(env.logs)}))
for d in range(6):
    append(env.logs / f"d{d}" / "app.log", f"line from d{d}")
ok = wait_for(lambda: len(env.sink.lines()) == 6, 5)
print("read", sorted(env.sink.lines()) if ok else env.sink.lines())
env.close()
"""


def test_past_the_watch_limit_the_files_of_further_directories_are_polled(tmp_path: Path) -> None:
    # A real limit: a user namespace of its own, where fs.inotify's watch limit is set to 3.
    root = Path(__file__).resolve().parents[4]
    script = tmp_path / "limit.py"
    script.write_text(WATCH_LIMIT)
    out = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            f'echo 3 > /proc/sys/user/max_inotify_watches && exec "{sys.executable}" "{script}"',
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    # Three of the seven directories (the root and six with a file each) are watched.
    assert "watched 3 unwatched 4" in lines, lines
    assert "polled as unwatched: True" in lines, lines
    assert any(line.startswith("inotify watch limit reached") for line in lines), lines
    assert f"read {sorted(f'line from d{d}' for d in range(6))}" in lines, lines
