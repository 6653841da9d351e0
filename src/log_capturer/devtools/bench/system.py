"""What the benchmark records about the machine and the processes it watches (Linux /proc), and
the agent runs the benches share: its configuration, its start, its timing to the checkpoint."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model, kernel and the versions of the Kafka clients in use."""
    import confluent_kafka

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "kcat": kcat_version(),
    }


def kcat_version() -> str | None:
    """``"1.7.1 (librdkafka 2.0.2)"``, or None when kcat is not installed."""
    exe = shutil.which("kcat")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-V"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    version = lib = ""
    for word, nxt in zip(out.split(), out.split()[1:], strict=False):
        if word == "Version":
            version = nxt
        elif word == "librdkafka":
            lib = nxt
    return f"{version} (librdkafka {lib})" if version else out.strip()[:80]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def rss_mib(pid: int, peak: bool = False) -> float | None:
    """Resident memory of ``pid`` now (VmRSS) or its peak so far (VmHWM), in MiB."""
    key = "VmHWM:" if peak else "VmRSS:"
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (the supervisor and workers of a multi-process agent)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def tree_rss_mib(pid: int, peak: bool = False) -> float | None:
    """Resident memory of ``pid`` and its descendants together, in MiB.

    With ``peak``, the sum of each process's own peak (VmHWM): an upper bound of
    the peak they reached together, since their peaks need not coincide.
    """
    sizes = [rss_mib(p, peak) for p in process_tree(pid)]
    known = [s for s in sizes if s is not None]
    return sum(known) if known else None


def pss_mib(pid: int) -> float | None:
    """Proportional set size of ``pid`` in MiB: pages shared with other processes (the same
    libraries in every worker) count once in all, split between them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def tree_pss_mib(pid: int) -> float | None:
    """Memory ``pid`` and its descendants use together (sum of PSS), in MiB."""
    sizes = [pss_mib(p) for p in process_tree(pid)]
    known = [s for s in sizes if s is not None]
    return sum(known) if known else None


def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` and its running descendants."""
    times = [cpu_seconds(p) for p in process_tree(pid)]
    known = [t for t in times if t is not None]
    return sum(known) if known else None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time used by ``pid`` (all its threads)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of ``pid``'s threads by name, a thread's number left out (``dispatch-0``
    and ``dispatch-1`` count as ``dispatch``, librdkafka's ``rdk:broker1`` as ``rdk:broker``).
    The agent names its threads for the system (log_capturer.threadnames); a process that does
    not shows its Python threads under the interpreter's name."""
    out: dict[str, float] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            comm = (task / "comm").read_text(errors="replace").strip()
            name = comm.rstrip("0123456789").rstrip("-") or "?"
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that ended meanwhile
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return out


def tree_thread_cpu(pid: int) -> dict[str, float]:
    """:func:`thread_cpu` of ``pid`` and its descendants together (the workers of
    ``--workers N`` add up by thread name)."""
    out: dict[str, float] = {}
    for p in process_tree(pid):
        for name, seconds in thread_cpu(p).items():
            out[name] = out.get(name, 0.0) + seconds
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in first]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    total = sum(ticks[:8])
    return (total - idle) / _CLK_TCK, total / _CLK_TCK


def get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return orjson.loads(r.read())


def get_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


@dataclass
class Sample:
    t: float  # seconds since the run's t0
    rss_mib: float | None
    cpu_s: float | None
    pss_mib: float | None
    dispatcher_utilization: float | None
    producer_outstanding: int | None
    producer_utilization: float | None
    lines_read: int | None
    extra_cpu_s: dict[str, float | None] = field(default_factory=dict)


class Sampler:
    """Samples the agent every ``interval`` seconds in a thread: /proc and its /stats endpoint.

    Memory and CPU are those of the agent's whole process tree (one process, or
    the supervisor and its workers).

    ``watch`` adds other processes (e.g. the broker) whose CPU time is recorded too.
    """

    def __init__(
        self,
        pid: int,
        stats_url: str,
        t0: float,
        producer_queue_size: int,
        interval: float = 0.5,
        watch: dict[str, int] | None = None,
    ) -> None:
        self.pid = pid
        self.stats_url = stats_url
        self.t0 = t0
        self.queue_size = producer_queue_size
        self.interval = interval
        self.watch = watch or {}
        self.samples: list[Sample] = []
        self.stats_errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def sample(self) -> Sample:
        disp = outstanding = lines = None
        putil = None
        try:
            stats = get_json(self.stats_url)
            disp = stats.get("dispatcher", {}).get("queue_utilization")
            sinks = stats.get("sinks", {})
            kafka: dict[str, Any] = next(iter(sinks.values()), {}) if isinstance(sinks, dict) else {}
            outstanding = kafka.get("outstanding")
            if outstanding is not None and self.queue_size:
                putil = min(1.0, outstanding / self.queue_size)
            lines = stats.get("files", {}).get("lines_read")
        except (OSError, ValueError):
            self.stats_errors += 1
        return Sample(
            t=round(time.time() - self.t0, 3),
            rss_mib=tree_rss_mib(self.pid),
            cpu_s=tree_cpu_seconds(self.pid),
            pss_mib=tree_pss_mib(self.pid),
            dispatcher_utilization=disp,
            producer_outstanding=outstanding,
            producer_utilization=putil,
            lines_read=lines,
            extra_cpu_s={name: cpu_seconds(p) for name, p in self.watch.items()},
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self.interval)


def file_agent_config(
    run: Path,
    logs: Path,
    api: int,
    metrics: int,
    sinks: dict[str, Any],
    app: dict[str, Any],
    flush_interval: str | None = None,
) -> dict[str, Any]:
    """An agent's configuration for a bench run: a file source reading ``logs`` from the
    beginning, its API and metrics on 127.0.0.1, its DLQ and positions under ``run``."""
    positions: dict[str, Any] = {"directory": str(run / "positions")}
    if flush_interval is not None:
        positions["flush_interval"] = flush_interval
    return {
        "app": app,
        "server": {"host": "127.0.0.1", "port": api},
        "metrics": {"host": "127.0.0.1", "port": metrics},
        "files_config": {"watch_directories": [str(logs)], "read_from": "beginning"},
        "dispatcher": {"dlq_config": {"directory": str(run / "dlq")}},
        "positions": positions,
        "sinks": sinks,
    }


@dataclass
class CheckpointTiming:
    """An agent timed from its first acknowledged line of a file until the file's checkpoint
    reached its end (``time.monotonic()`` values; ``end`` 0.0: the end was not reached)."""

    first: float = 0.0
    end: float = 0.0
    #: CPU seconds of the agent's process tree between the two (None: not readable).
    cpu_seconds: float | None = None
    #: The highest resident memory sampled meanwhile, in MiB.
    rss_mb: float = 0.0

    @property
    def seconds(self) -> float:
        return self.end - self.first


def time_to_checkpoint(
    agent: subprocess.Popen[bytes], api: int, path: Path, size: int, timeout: float
) -> CheckpointTiming:
    """Poll the agent's ``/positions`` (API on 127.0.0.1:``api``) until ``path``'s offset
    reaches ``size``, the agent exits or ``timeout`` seconds pass; the agent keeps running."""
    timing = CheckpointTiming()
    cpu_first = 0.0
    # The last poll that saw nothing acknowledged yet: the start when the whole file is
    # acknowledged between two polls (a run too short to see a partial offset).
    idle: tuple[float, float] | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and agent.poll() is None:
        try:
            pos = get_json(f"http://127.0.0.1:{api}/positions")["files"].get(str(path), {})
        except OSError:
            time.sleep(0.05)
            continue
        offset = int(pos.get("offset", 0))
        now = time.monotonic()
        if offset == 0:
            idle = (now, tree_cpu_seconds(agent.pid) or 0.0)
        elif not timing.first:
            if offset >= size:
                if idle is None:
                    raise RuntimeError(
                        "the agent acknowledged the whole file before its first poll: too few "
                        "lines to time; run with more lines"
                    )
                timing.first, cpu_first = idle
            else:
                timing.first = now
                cpu_first = tree_cpu_seconds(agent.pid) or 0.0
        timing.rss_mb = max(timing.rss_mb, rss_mib(agent.pid) or 0.0)
        if offset >= size:
            timing.end = now
            break
        time.sleep(0.1)  # the agent's API answers on the agent's own CPU: not too often
    cpu_end = tree_cpu_seconds(agent.pid)
    timing.cpu_seconds = round(cpu_end - cpu_first, 2) if cpu_end is not None else None
    return timing


def stop_agent(agent: subprocess.Popen[bytes]) -> None:
    """SIGTERM the agent if it still runs, and wait for it."""
    if agent.poll() is None:
        agent.terminate()
        agent.wait(60)


def start_agent(config: dict[str, Any], folder: Path, output: Path) -> subprocess.Popen[bytes]:
    """``log-capturer run`` on ``config`` (written to ``folder``/agent.yaml) in ``folder``, its
    output into ``output``."""
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    with output.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "log_capturer", "run", "--config", str(path), "--no-status"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )


def finish_result(folder: Path, result: dict[str, Any], console: Any) -> dict[str, Any]:
    """Add the load and the cores to ``result``, save it as ``folder/result.json`` (YAML, a JSON
    superset) and print whether each of its ``targets`` was met."""
    result["load_average"] = load_average()
    result["cores"] = os.cpu_count()
    result["targets"] = result.pop("targets")  # last, as before
    (folder / "result.json").write_text(yaml.safe_dump(result, sort_keys=False))
    for what, ok in result["targets"].items():
        console.print(f"{'met' if ok else 'NOT met'}: {what}")
    return result
