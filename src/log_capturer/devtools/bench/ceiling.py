"""The ceiling: how fast raw librdkafka ships the same file with the same producer settings.

``kcat -P -l FILE`` (Debian's kcat) sends each line as one record, with the
agent's producer properties passed as ``-X``; several files (``--files N``)
are fed to one kcat through its standard input, one after the other. When kcat is missing or cannot
talk to the broker, a bare confluent-kafka produce loop with no processing
runs instead (``python -m log_capturer.devtools.bench.ceiling``). Either way
the rate is taken from the broker's append times of the first and last
records, so process start-up does not count, exactly as for the agent.

The keyed ceiling (``bench --ceiling-keyed``) is a second column, never a replacement: kcat on
a copy of the files with each line's partitioning key put in front of it (``kcat -K`` with a
tab between key and line), so kcat too hashes a key per record and spreads each key's records
to its partition, as the agent does with ``partitioning.key_field``. It writes one topic where
the agent writes the routed ones.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from log_capturer.devtools.bench.system import kcat_version

#: Producer properties that are Python objects or belong to the agent alone.
_NOT_FOR_CLI = {"error_cb", "stats_cb", "logger", "statistics.interval.ms", "client.id"}


@dataclass
class CeilingResult:
    tool: str  # "kcat" or "confluent-kafka"
    version: str
    topic: str
    lines: int
    delivered: int  # records in the topic afterwards
    wall_seconds: float
    append_span_seconds: float | None
    throughput: float | None  # lines per second over the append span (the wall time when 0)
    error: str = ""
    fallback_reason: str = ""
    #: CPU time (user + system) of the producing process (kcat, or the Python producer), and per
    #: line delivered: what the agent's ``cpu_us_per_line`` is compared with.
    cpu_seconds: float | None = None
    cpu_us_per_line: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cli_properties(conf: dict[str, Any]) -> dict[str, str]:
    """librdkafka properties as strings, without the agent-only entries."""
    out: dict[str, str] = {}
    for k, v in conf.items():
        if k in _NOT_FOR_CLI or callable(v):
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    out["client.id"] = "log-capturer-bench-ceiling"
    return out


def run_ceiling(
    mode: str, bootstrap: str, topic: str, files: list[Path], lines: int, conf: dict[str, Any]
) -> CeilingResult:
    """``mode``: auto (kcat, else confluent-kafka), kcat, or python."""
    props = cli_properties(conf)
    fallback = ""
    if mode in ("auto", "kcat"):
        if shutil.which("kcat") is None:
            fallback = "kcat is not installed (scripts/system-deps.sh installs it)"
        else:
            res = _run_kcat(bootstrap, topic, files, lines, props)
            if not res.error or mode == "kcat":
                return res
            fallback = f"kcat failed: {res.error}"
        if mode == "kcat":
            return CeilingResult("kcat", "", topic, lines, 0, 0.0, None, None, error=fallback)
    res = _run_python(bootstrap, topic, files, lines, props)
    res.fallback_reason = fallback
    return res


def _run_kcat(
    bootstrap: str, topic: str, files: list[Path], lines: int, props: dict[str, str]
) -> CeilingResult:
    cmd = ["kcat", "-P", "-b", bootstrap, "-t", topic]
    for k, v in props.items():
        if k != "bootstrap.servers":
            cmd += ["-X", f"{k}={v}"]
    start = time.monotonic()
    cpu0 = children_cpu()
    if len(files) == 1:
        proc = subprocess.run([*cmd, "-l", str(files[0])], capture_output=True, text=True, check=False)
        cpu = children_cpu() - cpu0
    else:
        # -l takes one file only; several go one after the other through kcat's standard input
        # (one line, one record, as with -l; measured as fast on this machine).
        cat = subprocess.Popen(["cat", *map(str, files)], stdout=subprocess.PIPE)
        proc = subprocess.run(cmd, stdin=cat.stdout, capture_output=True, text=True, check=False)
        cpu = children_cpu() - cpu0  # kcat's alone: cat is not waited for yet
        assert cat.stdout is not None
        cat.stdout.close()
        cat.wait()
    wall = time.monotonic() - start
    error = ""
    if proc.returncode != 0:
        error = f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"
    return _finish("kcat", kcat_version() or "", bootstrap, topic, lines, wall, error, cpu)


#: The delimiter between key and line in the keyed copy (generated lines hold no tab).
KEY_DELIMITER = "\t"


def key_pattern(fmt: str, key_field: str) -> re.Pattern[bytes] | None:
    """How to find ``key_field``'s value in a generated line of format ``fmt`` (json: a string
    member, logfmt: an unquoted value), as a pattern matched at the start of each line; None for
    a format whose lines carry no fields (plain)."""
    name = re.escape(key_field.encode())
    if fmt == "json":
        return re.compile(rb'^(?=[^\n]*?"' + name + rb'":"([^"\\\n]*)")', re.M)
    if fmt == "logfmt":
        return re.compile(rb"^(?=(?:[^\n]*? )?" + name + rb'=([^\s"]+))', re.M)
    return None


def keyed_copy(files: list[Path], out: Path, pattern: re.Pattern[bytes]) -> int:
    """Write ``files`` one after the other to ``out``, each line with its key and a tab in front
    (a line without the key as it is: kcat then sends it without a key, as the agent does).
    Returns the number of lines that got a key."""
    keyed = 0
    delim = KEY_DELIMITER.encode()

    def sub(m: re.Match[bytes]) -> bytes:
        nonlocal keyed
        keyed += 1
        return m.group(1) + delim

    with out.open("wb") as dst:
        for f in files:
            dst.write(pattern.sub(sub, f.read_bytes()))
    return keyed


def run_keyed_ceiling(
    bootstrap: str, topic: str, keyed_file: Path, lines: int, conf: dict[str, Any]
) -> CeilingResult:
    """kcat on the keyed copy (``keyed_copy``): each line's key hashed by the agent's partitioner."""
    props = cli_properties(conf)
    if shutil.which("kcat") is None:
        return CeilingResult("kcat -K", "", topic, lines, 0, 0.0, None, None, error="kcat is not installed")
    cmd = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", KEY_DELIMITER]
    for k, v in props.items():
        if k != "bootstrap.servers":
            cmd += ["-X", f"{k}={v}"]
    start = time.monotonic()
    cpu0 = children_cpu()
    proc = subprocess.run([*cmd, "-l", str(keyed_file)], capture_output=True, text=True, check=False)
    cpu = children_cpu() - cpu0
    wall = time.monotonic() - start
    error = f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}" if proc.returncode != 0 else ""
    return _finish("kcat -K", kcat_version() or "", bootstrap, topic, lines, wall, error, cpu)


def _run_python(
    bootstrap: str, topic: str, files: list[Path], lines: int, props: dict[str, str]
) -> CeilingResult:
    import confluent_kafka

    props = {**props, "bootstrap.servers": bootstrap}
    cmd = [sys.executable, "-m", __name__, json.dumps(props), topic, *map(str, files)]
    start = time.monotonic()
    cpu0 = children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    cpu = children_cpu() - cpu0
    wall = time.monotonic() - start
    error = ""
    if proc.returncode != 0:
        error = f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"
    version = f"{confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"
    return _finish("confluent-kafka", version, bootstrap, topic, lines, wall, error, cpu)


def children_cpu() -> float:
    """CPU seconds (user + system) of the children waited for so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _finish(
    tool: str,
    version: str,
    bootstrap: str,
    topic: str,
    lines: int,
    wall: float,
    error: str,
    cpu: float | None = None,
) -> CeilingResult:
    delivered, first_ms, last_ms = topic_span(bootstrap, topic)
    span = (last_ms - first_ms) / 1000.0 if first_ms is not None and last_ms is not None else None
    if not error and delivered < lines:
        error = f"only {delivered} of {lines} lines reached the topic"
    # A small input can reach the broker in one batch, appended in one millisecond (span 0):
    # then the tool's wall time is the span.
    throughput = delivered / span if span else (delivered / wall if wall > 0 and delivered else None)
    per_line = round(cpu / delivered * 1e6, 3) if cpu is not None and delivered else None
    return CeilingResult(
        tool,
        version,
        topic,
        lines,
        delivered,
        round(wall, 3),
        span,
        throughput,
        error,
        cpu_seconds=None if cpu is None else round(cpu, 2),
        cpu_us_per_line=per_line,
    )


def topic_span(bootstrap: str, topic: str) -> tuple[int, int | None, int | None]:
    """(records, earliest and latest record timestamps in ms) of a topic.

    Reads only the first and the last record of each partition: with
    LogAppendTime, timestamps grow with offsets within a partition.
    """
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-span-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        parts = c.list_topics(topic, timeout=30).topics[topic].partitions
        wanted: dict[tuple[int, int], None] = {}
        total = 0
        for p in parts:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30, cached=False)
            total += high - low
            if high > low:
                wanted[(p, low)] = None
                wanted[(p, high - 1)] = None
        times: list[int] = []
        for p, off in wanted:
            c.assign([TopicPartition(topic, p, off)])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                m = c.poll(1.0)
                if m is not None and not m.error():
                    times.append(m.timestamp()[1])
                    break
        return total, (min(times) if times else None), (max(times) if times else None)
    finally:
        c.close()


def _produce_files(props: dict[str, str], topic: str, paths: list[str]) -> dict[str, Any]:
    """The bare produce loop: each line of each file is one record, nothing else."""
    from confluent_kafka import Producer

    failed = 0

    def report(err: Any, _msg: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    producer = Producer(props)
    produce = producer.produce
    sent = 0
    start = time.monotonic()
    for path in paths:
        with open(path, "rb") as f:
            rest = b""
            while block := f.read(4 << 20):
                data = rest + block
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                for line in data[:cut].splitlines():
                    while True:
                        try:
                            produce(topic, line, on_delivery=report)
                            break
                        except BufferError:
                            producer.poll(0.05)
                    sent += 1
                producer.poll(0)
            if rest:
                produce(topic, rest, on_delivery=report)
                sent += 1
    left = producer.flush(300)
    return {"sent": sent, "failed": failed + left, "seconds": time.monotonic() - start}


if __name__ == "__main__":
    result = _produce_files(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:])
    print(json.dumps(result))
    sys.exit(1 if result["failed"] else 0)
