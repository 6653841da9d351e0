"""The agent's threads carry their names in the operating system too.

Python names its threads (``dispatch-0``, ``file-source``, ``kafka_sink-poll``) only for
itself: ``top -H``, ``ps -L``, ``perf`` and the kernel's ``/proc/<pid>/task/<tid>/comm`` show
every one of them as ``python3.11``, beside librdkafka's own ``rdk:broker1`` and ``rdk:main``.
:func:`name_threads` gives each thread started afterwards its Python name (the first 15 bytes,
the kernel's limit) when it starts, and names the calling thread ``log-capturer`` (a
multi-process agent's supervisor ``lc-supervisor``); ``log-capturer bench`` then reports the
agent's CPU per thread by these names.

The name is set from inside the new thread (Linux names only the calling thread through
``prctl``), by a profile hook that ``threading`` installs in each thread before its ``run()``
and that removes itself at its first event: nothing runs per call afterwards. A thread whose
code sets a profile hook of its own replaces this one. Not Linux, or no C library: nothing is
done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from types import FrameType
from typing import Any

#: prctl() option that sets the calling thread's name (linux/prctl.h).
PR_SET_NAME = 15
#: The kernel keeps 15 bytes of a thread's name (16 with the terminating NUL).
MAX_NAME_BYTES = 15
#: The main thread of ``log-capturer run`` (one process) and of each worker.
MAIN_NAME = "log-capturer"
#: The main thread of a multi-process agent's supervisor.
SUPERVISOR_NAME = "lc-supervisor"

_prctl: Any = None


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


def set_os_name(name: str) -> bool:
    """Name the calling thread ``name`` (its first 15 UTF-8 bytes) for the operating system;
    False where that cannot be done."""
    global _prctl
    if _prctl is None:
        _prctl = _load_prctl() or False
    if not _prctl:
        return False
    # Cut at a character's boundary: no half of a character in what the kernel keeps.
    raw = name.encode("utf-8", "replace")[:MAX_NAME_BYTES].decode("utf-8", "ignore").encode()
    return bool(_prctl(PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0) == 0)


def _on_thread_start(_frame: FrameType, _event: str, _arg: object) -> None:
    sys.setprofile(None)  # once: the thread runs without a hook from here on
    set_os_name(threading.current_thread().name)


def name_threads(main: str = MAIN_NAME) -> None:
    """Name this thread ``main`` and every thread started from now on by its Python name, for
    the operating system."""
    set_os_name(main)
    threading.setprofile(_on_thread_start)
