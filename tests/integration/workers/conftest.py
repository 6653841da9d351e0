"""Helpers for the multi-process tests: files the generator feeds, and what arrived per file."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from log_capturer.workers.shard import shard_of
from tests.support import REPO, Rec

ROUTED = ("logs", "logs-high-priority", "logs-normal-priority", "logs-low-priority")


def files_for_workers(logs: Path, count: int, per_worker: int) -> list[Path]:
    """``per_worker`` file names for each of ``count`` workers (by the agent's own sharding)."""
    picked: dict[int, list[Path]] = defaultdict(list)
    for i in range(1000):
        path = logs / f"app-{i}.log"
        w = shard_of(str(path), count)
        if len(picked[w]) < per_worker:
            picked[w].append(path)
        if all(len(picked[j]) == per_worker for j in range(count)):
            return [p for j in range(count) for p in picked[j]]
    raise AssertionError("could not find file names for every worker")


def generate(paths: list[Path], count: int, rate: float = 0, seed: int = 1) -> subprocess.Popen[bytes]:
    """The project's generator appending ``count`` JSON lines to ``paths``, one batch each in turn."""
    cmd = [sys.executable, "-m", "log_capturer", "generate", "--target", "file", "--no-progress"]
    cmd += ["--rate", str(rate), "--count", str(count), "--duration", "0", "--seed", str(seed)]
    for p in paths:
        cmd += ["--output", str(p)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def write_lines(paths: list[Path], count: int, seed: int = 1) -> None:
    proc = generate(paths, count, 0, seed)
    assert proc.wait(120) == 0, proc.stderr.read() if proc.stderr else ""


def written(paths: list[Path]) -> dict[tuple[str, str], int]:
    """Every line on disk: (file, line) -> its index in the file. Each line is unique (seq, time)."""
    out: dict[tuple[str, str], int] = {}
    for p in paths:
        for i, line in enumerate(p.read_text().splitlines()):
            out[(str(p), line)] = i
    assert len(out) == sum(len(p.read_text().splitlines()) for p in paths), "lines are not unique"
    return out


def arrived(records: list[Rec]) -> Counter[tuple[str, str]]:
    """How often each (file, line) arrived in Kafka."""
    out: Counter[tuple[str, str]] = Counter()
    for r in records:
        body = r.json()
        out[(str(body["source_id"]), str(body["message"]))] += 1
    return out


def missing_and_duplicated(records: list[Rec], paths: list[Path]) -> tuple[list[tuple[str, str]], int]:
    """Lines on disk that never arrived, and how many arrivals were repeats."""
    want = written(paths)
    got = arrived(records)
    assert set(got) <= set(want), f"records of lines never written: {list(set(got) - set(want))[:3]}"
    return [k for k in want if k not in got], sum(n - 1 for n in got.values() if n > 1)


def assert_file_order_per_partition(records: list[Rec], paths: list[Path]) -> None:
    """Within each partition, the lines of each file come in the order they are in the file."""
    index = written(paths)
    last: dict[tuple[str, int, str], int] = {}
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        body = r.json()
        key = (r.topic, r.partition, str(body["source_id"]))
        i = index[(str(body["source_id"]), str(body["message"]))]
        assert i > last.get(key, -1), f"out of order in {key}: line {i} after line {last[key]}"
        last[key] = i
