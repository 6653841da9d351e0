"""The ``many-files`` scenario: thousands of followed files, few of them written.

Sequence: write ``files`` files of one line each, spread over directories of 100 files, under the
agent's watched directory; start the agent and wait until it has acknowledged every file to its
end; stop it (its positions are saved). Then, timed:

1. **start-up**: start the agent again, with ``files`` saved positions, and time it until
   ``/stats`` counts every file as followed;
2. **idle**: after a settling pause, the CPU time of the agent's process tree over
   ``idle_window`` seconds while no file changes, as a percentage of one core, and its RSS;
3. **active**: ``active`` of the files are each written ``rate`` lines/s for ``active_window``
   seconds (one line per write, each carrying its file, sequence number and write time); the CPU
   meanwhile, and then every record is read back from the topic: the latency of each line is the
   broker's append time (``LogAppendTime``) minus its write time, and each (file, sequence)
   must be there exactly once.

``watcher`` is the agent's ``files_config.watcher``: ``poll`` measures the agent as it was before
inotify (every file looked at every ``poll_interval``), ``auto``/``inotify`` with it.
"""

from __future__ import annotations

import calendar
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from log_capturer.devtools.bench.harness import merge
from log_capturer.devtools.bench.system import (
    get_json,
    load_average,
    machine_info,
    stop_agent,
    tree_cpu_seconds,
    tree_rss_mib,
)
from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.topics import TopicSpec, create_topics, delete_topics

#: What each active line carries: its file, its sequence number in that file, its write time (ns).
MARK = re.compile(rb"mf-line f=(\d+) seq=(\d+) ns=(\d+)")
#: The record's read time (the agent's ``timestamp``: these lines carry no time of their own).
READ_TIME = re.compile(rb'"timestamp":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z"')
FILES_PER_DIRECTORY = 100
ERROR_LINE = re.compile(r'"level": ?"(?:ERROR|CRITICAL)"')


class ManyFilesError(RuntimeError):
    """The scenario could not run; the message says why."""


@dataclass(frozen=True)
class ManyFilesOptions:
    bootstrap: str
    out_dir: Path
    files: int = 10_000
    active: int = 100
    rate: float = 100.0
    watcher: str = "auto"
    idle_window: float = 30.0
    active_window: float = 30.0
    settle: float = 10.0
    keep: bool = False
    #: Run the agent from this source tree (``PYTHONPATH``): a checkout of the code before a
    #: change, to compare.
    agent_src: Path | None = None
    #: A YAML file merged over the agent's config (``--agent-config``: another tuning).
    agent_config: Path | None = None


def _paths(logs: Path, files: int) -> list[Path]:
    return [logs / f"d{i // FILES_PER_DIRECTORY:03d}" / f"f{i:05d}.log" for i in range(files)]


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class ManyFilesBench:
    def __init__(self, opts: ManyFilesOptions, console: Console | None = None) -> None:
        if opts.files < 1 or not 0 <= opts.active <= opts.files:
            raise ManyFilesError("--files must be at least 1 and --active between 0 and --files")
        if opts.rate <= 0 and opts.active:
            raise ManyFilesError("--rate must be above 0")
        self.opts = opts
        self.console = console or Console(stderr=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        label = opts.watcher if opts.agent_src is None else "before"
        self.run_id = f"many-files-{label}-{stamp}-{uuid.uuid4().hex[:6]}"
        self.dir = (opts.out_dir / self.run_id).resolve()
        self.logs = self.dir / "logs"
        self.topic = f"bench-{self.run_id}"
        self.api = free_port()
        self.metrics_port = free_port()

    def log(self, text: str) -> None:
        self.console.print(f"[dim]bench many-files:[/] {text}", highlight=False)

    def _config(self) -> dict[str, Any]:
        """The agent's config: the defaults but what the scenario sets (brokers, topic, directories,
        ports, acks, compression, keys), over ``--agent-config`` (another tuning) when given."""
        tuning = {} if self.opts.agent_config is None else yaml.safe_load(self.opts.agent_config.read_text())
        return merge(tuning or {}, self._base_config())

    def _base_config(self) -> dict[str, Any]:
        return {
            "app": {"log_level": "info", "log_format": "json"},
            "server": {"enabled": True, "host": "127.0.0.1", "port": self.api},
            "metrics": {"enabled": True, "host": "127.0.0.1", "port": self.metrics_port},
            "files_config": {
                "enabled": True,
                "watch_directories": [str(self.logs)],
                "read_from": "beginning",
                "watcher": self.opts.watcher,
            },
            "dispatcher": {"dlq_config": {"enabled": True, "directory": str(self.dir / "dlq")}},
            "positions": {"enabled": True, "directory": str(self.dir / "positions")},
            "sinks": {
                "kafka": {
                    "enabled": True,
                    "brokers": self.opts.bootstrap.split(","),
                    "topic": self.topic,
                    "compression": "zstd",
                    "required_acks": -1,
                    "partitioning": {"enabled": True, "strategy": "hash", "key_field": "source_id"},
                    "dlq_config": {"topic": f"{self.topic}-dlq"},
                }
            },
        }

    def _start(self, config: dict[str, Any], log_name: str) -> subprocess.Popen[bytes]:
        """``log-capturer run`` on ``config``, from ``agent_src`` when given."""
        path = self.dir / "agent.yaml"
        path.write_text(yaml.safe_dump(config))
        env = dict(os.environ)
        if self.opts.agent_src is not None:
            env["PYTHONPATH"] = str(self.opts.agent_src.resolve())
        with (self.dir / log_name).open("wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "log_capturer", "run", "--config", str(path), "--no-status"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=env,
            )

    def _agent_commit(self) -> str | None:
        where = self.opts.agent_src or Path(__file__).parent
        try:
            out = subprocess.run(
                ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None

    def _stats(self) -> dict[str, Any] | None:
        try:
            stats = get_json(f"http://127.0.0.1:{self.api}/stats")
        except (OSError, ValueError):
            return None
        return stats if isinstance(stats, dict) else None

    @staticmethod
    def _monitored(stats: dict[str, Any]) -> int:
        return sum(int(v.get("monitored", 0)) for v in stats.values() if isinstance(v, dict))

    def _acknowledged(self, paths: list[Path]) -> int:
        """Files whose acknowledged position is at their end."""
        try:
            pos = get_json(f"http://127.0.0.1:{self.api}/positions", timeout=10)["files"]
        except (OSError, ValueError, KeyError):
            return 0
        return sum(1 for p in paths if int(pos.get(str(p), {}).get("offset", -1)) == p.stat().st_size)

    def _wait(self, what: str, cond: Any, agent: Any, timeout: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if agent.poll() is not None:
                raise ManyFilesError(f"the agent exited while {what}; see {self.dir / 'agent.log'}")
            if cond():
                return time.monotonic() - start
            time.sleep(0.05)
        raise ManyFilesError(f"timed out after {timeout:.0f} s {what}; see {self.dir / 'agent.log'}")

    def run(self) -> dict[str, Any]:
        o = self.opts
        self.logs.mkdir(parents=True)
        paths = _paths(self.logs, o.files)
        for p in paths:
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(b"mf-init " + p.name.encode() + b"\n")
        create_topics(
            o.bootstrap,
            topics=(
                TopicSpec(self.topic, 6, 1, "bench many-files"),
                TopicSpec(f"{self.topic}-dlq", 1, 1, "dlq"),
            ),
            topic_config={"message.timestamp.type": "LogAppendTime"},
        )
        config = self._config()
        load_before = load_average()
        # The first run reads the files and saves their positions.
        self.log(f"{o.files} files written; first start (reads them, saves the positions)")
        agent = self._start(config, "agent-first.log")
        try:
            self._wait(
                "waiting for /stats",
                lambda: (s := self._stats()) is not None and self._monitored(s) >= o.files,
                agent,
                300,
            )
            self._wait("reading the files", lambda: self._acknowledged(paths) == o.files, agent, 600)
        finally:
            stop_agent(agent)
        saved = sum(1 for _ in (self.dir / "positions").glob("*.json"))
        if not saved:
            raise ManyFilesError("the first run saved no positions")

        self.log("second start, with the saved positions (timed)")
        agent = self._start(config, "agent.log")
        result: dict[str, Any] = {}
        try:
            started = time.monotonic()
            self._wait("waiting for the API", lambda: self._stats() is not None, agent, 120)
            api_s = time.monotonic() - started
            self._wait(
                "following the files",
                lambda: (s := self._stats()) is not None and self._monitored(s) >= o.files,
                agent,
                300,
            )
            startup_s = time.monotonic() - started
            self.log(f"following {o.files} files after {startup_s:.2f} s; settling {o.settle:.0f} s")
            time.sleep(o.settle)
            cpu0, t0 = tree_cpu_seconds(agent.pid) or 0.0, time.monotonic()
            time.sleep(o.idle_window)
            cpu1, t1 = tree_cpu_seconds(agent.pid) or 0.0, time.monotonic()
            idle_cpu = 100 * (cpu1 - cpu0) / (t1 - t0)
            idle_rss = tree_rss_mib(agent.pid) or 0.0
            self.log(f"idle: {idle_cpu:.2f} % of one core, RSS {idle_rss:.0f} MiB")
            written, active_cpu, active_rss = self._active(paths[: o.active], agent)
            # Let the last lines through before the agent stops.
            self._wait(
                "delivering the active lines",
                lambda: self._acknowledged(paths[: o.active]) == o.active,
                agent,
                120,
            )
            result.update(
                startup_api_s=round(api_s, 3),
                startup_s=round(startup_s, 3),
                idle_cpu_pct=round(idle_cpu, 2),
                idle_rss_mib=round(idle_rss, 1),
                active_cpu_pct=round(active_cpu, 2),
                active_rss_mib=round(active_rss, 1),
                lines_written=written,
            )
        finally:
            stop_agent(agent)
        result.update(self._read_back(written))
        errors = len(ERROR_LINE.findall((self.dir / "agent.log").read_text()))
        out = {
            "scenario": "many-files",
            "run_id": self.run_id,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": o.files,
            "active": o.active,
            "rate_per_file": o.rate,
            "watcher": o.watcher,
            "agent_src": str(o.agent_src) if o.agent_src is not None else None,
            "agent_config": str(o.agent_config) if o.agent_config is not None else None,
            "agent_commit": self._agent_commit(),
            "idle_window_s": o.idle_window,
            "active_window_s": o.active_window,
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "machine": machine_info(),
            "agent_errors": errors,
            **result,
        }
        if not o.keep and not out["lost"] and not out["duplicated"]:
            delete_topics(o.bootstrap, [self.topic, f"{self.topic}-dlq"])
            for p in paths:
                p.unlink()
        return out

    def _active(self, paths: list[Path], agent: Any) -> tuple[int, float, float]:
        """Write ``rate`` lines/s to each of ``paths`` for ``active_window`` s (one thread, one
        line per write, in turns of 10 ms). Returns the lines written, the agent's CPU % of one
        core meanwhile and its highest RSS."""
        o = self.opts
        if not paths:
            return 0, 0.0, 0.0
        handles = [p.open("ab", buffering=0) for p in paths]
        seqs = [0] * len(paths)
        owed = [0.0] * len(paths)
        rss = 0.0
        stop = threading.Event()

        def sample() -> None:
            nonlocal rss
            while not stop.wait(0.5):
                rss = max(rss, tree_rss_mib(agent.pid) or 0.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        self.log(f"active: {len(paths)} files x {o.rate:g} lines/s for {o.active_window:.0f} s")
        cpu0, start = tree_cpu_seconds(agent.pid) or 0.0, time.monotonic()
        last = start
        end = start + o.active_window
        try:
            while (now := time.monotonic()) < end:
                step = now - last
                last = now
                for i, f in enumerate(handles):
                    owed[i] += o.rate * step
                    while owed[i] >= 1:
                        owed[i] -= 1
                        f.write(b"mf-line f=%d seq=%d ns=%d\n" % (i, seqs[i], time.time_ns()))
                        seqs[i] += 1
                time.sleep(max(0.0, 0.01 - (time.monotonic() - now)))
            cpu1, t1 = tree_cpu_seconds(agent.pid) or 0.0, time.monotonic()
        finally:
            stop.set()
            for f in handles:
                f.close()
        sampler.join()
        return sum(seqs), 100 * (cpu1 - cpu0) / (t1 - start), rss

    def _read_back(self, written: int) -> dict[str, Any]:
        """Every record of the topic: latency of the active lines, lost and duplicated ones."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer(
            {
                "bootstrap.servers": self.opts.bootstrap,
                "group.id": f"bench-many-files-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            md = c.list_topics(self.topic, timeout=30)
            parts = list(md.topics[self.topic].partitions)
            ends = {p: c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)[1] for p in parts}
            c.assign([TopicPartition(self.topic, p, 0) for p in parts])
            seen: dict[tuple[int, int], int] = {}
            latencies: list[float] = []
            # The two stages: write -> read by the agent, read -> appended in Kafka.
            to_read: list[float] = []
            to_kafka: list[float] = []
            seconds: dict[bytes, int] = {}
            records = initial = 0
            pos = dict.fromkeys(parts, 0)
            deadline = time.monotonic() + 300
            while any(pos[p] < ends[p] for p in parts) and time.monotonic() < deadline:
                for msg in c.consume(10_000, 1.0):
                    if msg.error():
                        continue
                    pos[msg.partition() or 0] = (msg.offset() or 0) + 1
                    records += 1
                    value = msg.value() or b""
                    m = MARK.search(value)
                    if m is None:
                        initial += b"mf-init " in value
                        continue
                    key = (int(m.group(1)), int(m.group(2)))
                    seen[key] = seen.get(key, 0) + 1
                    appended = msg.timestamp()[1]
                    written_ms = int(m.group(3)) / 1e6
                    latencies.append(appended - written_ms)
                    read_ms = _read_time_ms(value, seconds)
                    if read_ms is not None:
                        to_read.append(read_ms - written_ms)
                        to_kafka.append(appended - read_ms)
        finally:
            c.close()
        latencies.sort()
        to_read.sort()
        to_kafka.sort()
        return {
            "records": records,
            # The files' first lines (read by the first start) must not come again after the restart.
            "lost": max(0, written - len(seen)) + max(0, self.opts.files - initial),
            "duplicated": sum(n - 1 for n in seen.values()) + max(0, initial - self.opts.files),
            "latency_ms": {
                "p50": round(_percentile(latencies, 0.50), 1),
                "p99": round(_percentile(latencies, 0.99), 1),
                "max": round(latencies[-1], 1) if latencies else 0.0,
            },
            "stages_ms": {
                "write_to_read": {q: round(_percentile(to_read, v), 1) for q, v in PERCENTILES},
                "read_to_kafka": {q: round(_percentile(to_kafka, v), 1) for q, v in PERCENTILES},
            },
        }


PERCENTILES = (("p50", 0.50), ("p99", 0.99), ("max", 1.0))


def _read_time_ms(value: bytes, seconds: dict[bytes, int]) -> float | None:
    """The record's read time in ms since the epoch (``seconds`` caches each second's value)."""
    m = READ_TIME.search(value)
    if m is None:
        return None
    sec = m.group(1)
    base = seconds.get(sec)
    if base is None:
        base = seconds[sec] = calendar.timegm(time.strptime(sec.decode(), "%Y-%m-%dT%H:%M:%S"))
    frac: bytes = m.group(2) or b"0"
    return base * 1000 + int(frac) / 10.0 ** (len(frac) - 3)


def run_many_files_bench(opts: ManyFilesOptions, console: Console | None = None) -> dict[str, Any]:
    return ManyFilesBench(opts, console).run()
