"""log_capturer.threadnames: the agent's threads by their names for the system, read back from
the kernel (/proc). Each case runs in a Python process of its own: the hook is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    from pathlib import Path
    from log_capturer.threadnames import name_threads

    def comm(tid):
        return Path(f"/proc/self/task/{tid}/comm").read_text().strip()

    seen = {}
    def work():
        t = threading.current_thread()
        seen[t.name] = (comm(t.native_id), sys.getprofile() is None)

    before = threading.Thread(target=work, name="before-naming")
    before.start(); before.join()
    name_threads()
    for name in ["dispatch-0", "kafka_sink-probe-thread", "journal-éééééé"]:
        t = threading.Thread(target=work, name=name)
        t.start(); t.join()
    seen["main"] = (comm(threading.main_thread().native_id), sys.getprofile() is None)
    print(json.dumps(seen))
    """
)


def test_threads_started_after_naming_carry_their_names_for_the_system() -> None:
    cmd = [sys.executable, "-c", SCRIPT]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(out.stdout)
    assert seen["dispatch-0"] == ["dispatch-0", True]  # named, and the hook removed itself
    assert seen["kafka_sink-probe-thread"] == ["kafka_sink-prob", True]  # the kernel's 15 bytes
    # At most 15 bytes of UTF-8, cut between characters (the fourth é would end at byte 16).
    assert seen["journal-éééééé"] == ["journal-ééé", True]
    assert seen["main"] == ["log-capturer", True]
    assert seen["before-naming"][0] != "before-naming"  # started before: the interpreter's name
