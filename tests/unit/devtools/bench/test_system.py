"""devtools/bench/system.py: timing an agent to a file's checkpoint, polled over real HTTP.

The "agent" here is a real ``python -m http.server`` serving a directory whose ``positions``
file the test rewrites, as the agent's ``/positions`` would move.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from log_capturer.devtools.bench.system import thread_cpu, time_to_checkpoint, tree_thread_cpu
from log_capturer.devtools.kafka_local import free_port

LOG = Path("/var/log/app.log")
SIZE = 1_000


def _write_offset(folder: Path, offset: int) -> None:
    tmp = folder / "positions.tmp"
    tmp.write_text(json.dumps({"files": {str(LOG): {"offset": offset}}}))
    tmp.replace(folder / "positions")


def _write_later(folder: Path, offset: int, delay: float) -> subprocess.Popen[bytes]:
    """Another process moves the offset after ``delay`` s, while the timing polls."""
    code = (
        "import json, pathlib, time\n"
        f"time.sleep({delay})\n"
        f"d = pathlib.Path({str(folder)!r})\n"
        f"(d / 'p.tmp').write_text(json.dumps({{'files': {{{str(LOG)!r}: {{'offset': {offset}}}}}}}))\n"
        "(d / 'p.tmp').replace(d / 'positions')\n"
    )
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    _write_offset(tmp_path, 0)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/positions", timeout=1).read()
            break
        except OSError:
            assert time.monotonic() < deadline, "http.server did not answer"
            time.sleep(0.05)
    try:
        yield server, port
    finally:
        server.kill()
        server.wait()


def test_a_file_acknowledged_between_two_polls_is_timed_from_the_last_idle_poll(
    served: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    server, port = served
    start = time.monotonic()
    # The whole file acknowledged at once, 0.5 s after the timing began: the polls saw 0, then
    # everything, never a partial offset (the case that measured 0 s and an absurd rate).
    writer = _write_later(tmp_path, SIZE, 0.5)
    timing = time_to_checkpoint(server, port, LOG, SIZE, timeout=10)
    writer.wait()
    assert timing.end, "the end was not seen"
    assert start <= timing.first < timing.end
    # The span is at most one poll interval (0.1 s) plus a request: never 0.
    assert 0 < timing.seconds < 1.0
    assert timing.cpu_seconds is not None


def test_a_file_acknowledged_before_the_first_poll_is_refused(
    served: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    server, port = served
    _write_offset(tmp_path, SIZE)
    with pytest.raises(RuntimeError, match="too few lines to time"):
        time_to_checkpoint(server, port, LOG, SIZE, timeout=10)


def test_a_partial_offset_starts_the_timing(
    served: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    server, port = served
    _write_offset(tmp_path, SIZE // 2)
    writer = _write_later(tmp_path, SIZE, 0.5)
    before = time.monotonic()
    timing = time_to_checkpoint(server, port, LOG, SIZE, timeout=10)
    writer.wait()
    assert before <= timing.first
    assert 0.3 < timing.seconds < 2.0


def test_thread_cpu_adds_up_the_threads_of_a_process_by_name() -> None:
    """Two spinning threads named ``spin-0`` and ``spin-1`` for the system (as the agent names
    its own) count as one ``spin``; the process's other threads keep their names."""
    from log_capturer.threadnames import set_os_name

    stop = threading.Event()

    def spin(name: str) -> None:
        set_os_name(name)
        while not stop.is_set():
            sum(range(1000))

    threads = [threading.Thread(target=spin, args=(f"spin-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.4)
        cpu = thread_cpu(os.getpid())
        tree = tree_thread_cpu(os.getpid())
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert cpu.get("spin", 0.0) > 0.05
    assert not any(name.startswith("spin-") for name in cpu)
    assert all(not name[-1:].isdigit() for name in cpu)
    assert tree.keys() >= cpu.keys()  # no child process here: the same threads
    assert thread_cpu(2**22 + 7) == {}  # no such process
