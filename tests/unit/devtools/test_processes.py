"""devtools/processes.py on real child processes: which pid is trusted, how a server is stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from log_capturer.devtools import processes

MARKER = b"devtools-processes-test"
#: A child that says "ready" once its SIGTERM handling is in place, then sleeps.
SLEEPER = "import signal, sys, time\n{setup}\nprint('ready', flush=True)\ntime.sleep(60)\n"


def _wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start sleepers whose command line holds MARKER and ``tmp_path``; kill what is left."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(ignore_term: bool = False) -> subprocess.Popen[bytes]:
        setup = "signal.signal(signal.SIGTERM, signal.SIG_IGN)" if ignore_term else ""
        log = tmp_path / f"child-{len(procs)}.log"
        cmd = [sys.executable, "-c", SLEEPER.format(setup=setup), MARKER.decode(), str(tmp_path)]
        proc = processes.spawn(cmd, log, tmp_path)
        procs.append(proc)
        _wait_for(lambda: "ready" in log.read_text())
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_is_running_trusts_only_a_live_process_of_the_marker_and_workdir(
    tmp_path: Path, started: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = started()
    assert processes.is_running(proc.pid, MARKER, tmp_path)
    assert not processes.is_running(proc.pid, MARKER, tmp_path / "other")
    assert not processes.is_running(proc.pid, b"some-other-server", tmp_path)
    assert not processes.is_running(None, MARKER, tmp_path)
    assert not processes.is_running(0, MARKER, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    _wait_for(lambda: not processes.is_running(proc.pid, MARKER, tmp_path))  # a zombie is not running
    assert Path(f"/proc/{proc.pid}").exists()  # not reaped yet
    processes.reap(proc.pid, wait=10)  # it may not be a zombie yet: wait for it
    assert _gone(proc.pid)
    processes.reap(proc.pid)  # reaping twice (or a stranger's pid) is harmless


def test_spawn_starts_a_new_session_in_cwd_appending_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_text("before\n")
    proc = processes.spawn(
        [sys.executable, "-c", "import os; print(os.getcwd()); print(os.getsid(0) == os.getpid())"],
        log,
        tmp_path,
    )
    assert proc.wait(30) == 0
    assert log.read_text().splitlines() == ["before", str(tmp_path), "True"]


def test_wait_exec_returns_once_the_command_runs_or_has_exited(tmp_path: Path) -> None:
    def alive(pid: int) -> bool:
        return processes.is_running(pid, MARKER, tmp_path)

    cmd = [sys.executable, "-c", SLEEPER.format(setup=""), MARKER.decode(), str(tmp_path)]
    proc = processes.spawn(cmd, tmp_path / "sleeper.log", tmp_path)
    try:
        processes.wait_exec(proc, alive)
        assert alive(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)
    quick = processes.spawn(["true"], tmp_path / "true.log", tmp_path)
    t0 = time.monotonic()
    processes.wait_exec(quick, alive, timeout=5)
    assert time.monotonic() - t0 < 5
    assert quick.returncode == 0


def _stop(proc: subprocess.Popen[bytes], workdir: Path, wait: float, resume: bool = False) -> int:
    """``processes.stop`` on ``proc``; how many times it said it had to SIGKILL."""
    kills: list[int] = []
    processes.stop(
        proc.pid,
        lambda p: processes.is_running(p, MARKER, workdir),
        wait=wait,
        resume=resume,
        on_kill=lambda: kills.append(1),
    )
    return len(kills)


def test_stop_sends_sigterm_and_reaps_without_killing(
    tmp_path: Path, started: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = started()
    assert _stop(proc, tmp_path, wait=20) == 0
    assert _gone(proc.pid)  # reaped: not even a zombie is left


def test_stop_kills_what_ignores_sigterm_after_the_wait(
    tmp_path: Path, started: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = started(ignore_term=True)
    t0 = time.monotonic()
    assert _stop(proc, tmp_path, wait=0.5) == 1
    assert 0.5 <= time.monotonic() - t0 < 10
    assert _gone(proc.pid)


def test_stop_with_resume_stops_a_paused_process_cleanly(
    tmp_path: Path, started: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = started()
    os.kill(proc.pid, signal.SIGSTOP)
    _wait_for(lambda: processes.all_stopped(proc.pid))
    assert _stop(proc, tmp_path, wait=20, resume=True) == 0
    assert _gone(proc.pid)


def test_all_stopped_follows_sigstop_and_sigcont(
    tmp_path: Path, started: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = started()
    assert not processes.all_stopped(proc.pid)
    os.kill(proc.pid, signal.SIGSTOP)
    _wait_for(lambda: processes.all_stopped(proc.pid))
    os.kill(proc.pid, signal.SIGCONT)
    _wait_for(lambda: not processes.all_stopped(proc.pid))
    proc.kill()
    proc.wait(10)
    assert not processes.all_stopped(proc.pid)  # no such process


def test_kill_ends_even_a_process_that_ignores_sigterm(
    tmp_path: Path, started: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proc = started(ignore_term=True)
    processes.kill(proc.pid, lambda p: processes.is_running(p, MARKER, tmp_path))
    assert _gone(proc.pid)


def test_write_state_replaces_the_file_whole_and_creates_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "work" / "server.json"
    processes.write_state(path, {"pid": 1, "port": 9200})
    assert json.loads(path.read_text()) == {"pid": 1, "port": 9200}
    processes.write_state(path, {"pid": None}, indent=2)
    assert path.read_text() == '{\n  "pid": null\n}'
    assert sorted(p.name for p in path.parent.iterdir()) == ["server.json"]  # no temporary left
