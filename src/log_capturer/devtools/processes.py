"""Server processes of the local-server managers: start one, tell whether it still runs, stop it.

The managers (:mod:`~log_capturer.devtools.kafka_local`, :mod:`~log_capturer.devtools.opensearch_local`,
:mod:`~log_capturer.devtools.victorialogs_local`, :mod:`~log_capturer.devtools.docker_local`)
keep a server's pid in a state file, so another process (``down``, ``status``) may act on it
later. A pid is only trusted while ``/proc/<pid>/cmdline`` still names the server and its work
directory: a recycled pid is never signalled. Linux only (``/proc``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: How often the stop and exec waits look at the process again, in seconds.
POLL = 0.1
#: How long a stopped child may take to become reapable after it left its command line, in seconds.
EXIT_WAIT = 1.0


def _state(pid: int, task: str = "") -> str:
    """The state letter of ``/proc/<pid>[/task/<tid>]/stat`` (raises OSError/IndexError)."""
    stat = Path(f"/proc/{pid}{task}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def is_running(pid: int | None, marker: bytes, workdir: Path) -> bool:
    """``pid`` is a live (not zombie) process whose command line holds ``marker`` and ``workdir``.

    The work directory in the command line tells this server from another one of the same
    kind, and both together tell it from an unrelated process that got the pid again.
    """
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if _state(pid) == "Z":
            return False
    except (OSError, IndexError):
        return False
    return marker in cmdline and str(workdir).encode() in cmdline


def all_stopped(pid: int) -> bool:
    """Every thread of ``pid`` is in the stopped state ('T' or 't'), e.g. after SIGSTOP."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        states = [_state(pid, f"/task/{t.name}") for t in tasks]
    except (OSError, IndexError):
        return False
    return bool(states) and all(st in ("T", "t") for st in states)


def reap(pid: int, wait: float = 0.0) -> None:
    """Collect ``pid``'s exit status if this process spawned it, so it does not linger as a
    zombie; a no-op for a process that is not our child. ``wait`` (seconds) bounds how long an
    exiting child is waited for: its command line empties before it turns into a zombie, so
    the liveness check may say "gone" a moment before the child can be reaped."""
    deadline = time.monotonic() + wait
    while True:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except OSError:  # ChildProcessError: not our child, or reaped already
            return
        if done or time.monotonic() >= deadline:
            return
        time.sleep(0.01)


def spawn(cmd: Sequence[str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session in ``cwd``, stdout and stderr appended to ``log_path``,
    stdin from /dev/null (the server outlives this process)."""
    with log_path.open("ab") as logf:
        return subprocess.Popen(
            list(cmd),
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
        )


def wait_exec(proc: subprocess.Popen[bytes], alive: Callable[[int], bool], timeout: float = 10.0) -> None:
    """Wait (at most ``timeout`` seconds) until ``alive(proc.pid)`` or ``proc`` exited: until
    ``exec()`` runs, ``/proc/<pid>/cmdline`` still shows this Python process."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not alive(proc.pid):
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)


def stop(
    pid: int,
    alive: Callable[[int], bool],
    sig: int = signal.SIGTERM,
    wait: float = 30.0,
    *,
    resume: bool = False,
    on_kill: Callable[[], None] | None = None,
    poll: float = POLL,
) -> None:
    """Send ``sig`` to ``pid``, wait up to ``wait`` seconds while ``alive(pid)``, then SIGKILL it
    and wait until it is gone; reap it if it is our child.

    ``resume`` sends SIGCONT first (a paused server cannot handle SIGTERM). ``on_kill`` is
    called before the SIGKILL (to say that the server did not stop in time).
    """
    with contextlib.suppress(ProcessLookupError):
        if resume:
            os.kill(pid, signal.SIGCONT)
        os.kill(pid, sig)
    deadline = time.monotonic() + wait
    while alive(pid) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(poll)
    if alive(pid):
        if on_kill is not None:
            on_kill()
        kill(pid, alive)
    reap(pid, EXIT_WAIT)


def kill(pid: int, alive: Callable[[int], bool]) -> None:
    """SIGKILL ``pid`` and wait until ``alive(pid)`` is false (a killed process cannot resist)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while alive(pid):
        reap(pid)
        time.sleep(0.05)
    reap(pid, EXIT_WAIT)


def write_state(path: Path, state: dict[str, Any], indent: int | None = None) -> None:
    """Write a manager's state file (the server's pid and ports) as JSON, atomically: a reader
    in another process sees the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=indent))
    tmp.replace(path)
