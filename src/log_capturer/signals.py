"""A stop flag that signal handlers may set.

Python runs a signal handler in the main thread, between two bytecodes of whatever that thread
was doing. A handler that calls ``threading.Event.set`` takes the event's lock; if the main
thread was inside ``Event.wait`` on that same event, holding that lock (it holds it except while
it sleeps), the handler waits for a lock its own thread holds, for ever: the process no longer
stops on SIGTERM (seen in the many-files benchmark: ``run`` hung after its SIGTERM, the main
thread's stack ``Event.wait`` -> ``on_signal`` -> ``Event.set`` -> ``Condition.__enter__``).
:class:`StopFlag` takes no lock: a handler sets a boolean, and :meth:`StopFlag.wait` sleeps in
short steps and looks at it.
"""

from __future__ import annotations

import time

#: Longest :meth:`StopFlag.wait` sleeps before it looks at the flag again.
STEP = 0.05


class StopFlag:
    """Set by a signal handler (or any thread), waited for by the main thread; no lock."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep until the flag is set or ``timeout`` passed; returns whether it is set."""
        deadline = time.monotonic() + timeout
        while not self._set:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(STEP, left))
        return self._set
