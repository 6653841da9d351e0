"""Sampling the agent with py-spy while the benchmark runs, and summarising where time goes."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    """py-spy from the same environment as this Python (the ``bench`` extra), else from PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """``py-spy record --format raw`` attached to ``pid``; stop() makes it write the stacks."""

    def __init__(self, pid: int, out: Path, rate: int = 100, subprocesses: bool = False) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed: pip install 'log-capturer[bench]'")
        self.out = out
        self.log = out.with_suffix(".log")
        self._logf = self.log.open("wb")
        # --nonblocking: never pause the agent (sampling costs it nothing); --threads: stacks start
        # with the thread, so dispatch, poll and file-source time show apart.
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                *(["--subprocesses"] if subprocesses else []),
                "--output",
                str(out),
            ],
            stdout=self._logf,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> str:
        """Stop sampling; return "" when the stacks were written, else py-spy's complaint."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._logf.close()
        if self.out.exists() and self.out.stat().st_size > 0:
            return ""
        return self.log.read_text(errors="replace").strip()[-1000:] or "py-spy wrote no samples"


def _frame_name(frame: str) -> str:
    """``encode_chunk (log_capturer/sinks/kafka/encode.py:52)`` -> without the line number."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def _process_name(frame: str) -> str:
    """``process 123:"python -m log_capturer.workers.worker --index 1 ..."`` -> ``worker 1 (pid 123)``."""
    pid = frame.removeprefix("process ").split(":", 1)[0]
    words = frame.split()
    if "--index" in words[:-1]:
        return f"worker {words[words.index('--index') + 1]} (pid {pid})"
    supervisor = "log_capturer.workers.supervisor" in words or "run" in words
    return f"supervisor (pid {pid})" if supervisor else f"pid {pid}"


def summarize(folded: Path, top: int = 20) -> str:
    """Text summary of py-spy's raw (folded) stacks: by thread, top self and inclusive frames."""
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    samples = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        samples += count
        frames = stack.split(";")
        process = ""
        while frames and frames[0].startswith("process "):  # --subprocesses: parent;child;...
            process, frames = frames[0], frames[1:]
        if process:
            processes[_process_name(process)] += count
        if frames and frames[0].startswith("thread "):
            threads[frames[0]] += count
            frames = frames[1:]
        names = [_frame_name(f) for f in frames]
        if names:
            self_time[names[-1]] += count
        for name in set(names):
            total_time[name] += count
    if samples == 0:
        return "no samples\n"
    out = [f"{samples} samples (only threads that were running; 100 per second)", ""]
    if len(processes) > 1:
        out += ["by process:"]
        out += [f"  {n / samples:6.1%}  {name}" for name, n in processes.most_common()]
        out += [""]
    out += ["by thread:"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in threads.most_common()]
    out += ["", f"top {top} by own time (self):"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in self_time.most_common(top)]
    out += ["", f"top {top} by inclusive time (the function and what it calls):"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in total_time.most_common(top)]
    return "\n".join(out) + "\n"
