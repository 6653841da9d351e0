"""``log-capturer bench --sink elasticsearch``: file -> agent -> Elasticsearch/OpenSearch, against a
bare-client ceiling on the same server in the same run.

1. ``lines`` generated lines are written to a file in advance (the ``max`` scenario's shape).
2. Ceiling: a bare client (the standard library's HTTP client, ``concurrency`` threads, one
   keep-alive connection each) posts the same lines as ``_bulk`` requests of the same batch size,
   each line a document of the same shape the agent sends (the record with ``@timestamp`` and an
   ``_id``), gzip level 1, into an index of its own; time from the first request to the last
   answer, every item checked. It runs before the agent and again after it (a fresh index each
   time: the server warms up in the first run); the faster run is the ceiling.
3. The agent: ``log-capturer run`` with a file source on that file and only ``sinks.elasticsearch``
   (same batch size and concurrency) into another index; time from its start until the index
   counts every line (``_count``, polled), then its checkpoint, and every document exactly once.

Both indices have one shard and no replica; they are deleted afterwards.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from log_capturer.devtools.generate import LineFactory
from log_capturer.devtools.kafka_local import free_port
from log_capturer.sinks.encoding import rfc3339_ns


class EsBenchError(RuntimeError):
    """The benchmark could not run (the server, the agent); the message says why."""


@dataclass
class EsBenchResult:
    url: str
    lines: int
    batch: int
    concurrency: int
    ceiling_seconds: float = 0.0
    agent_seconds: float = 0.0
    documents: int = 0
    duplicates: int = 0
    agent_rss_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ceiling_rate(self) -> float:
        return self.lines / self.ceiling_seconds if self.ceiling_seconds else 0.0

    @property
    def agent_rate(self) -> float:
        return self.lines / self.agent_seconds if self.agent_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        ratio = self.agent_rate / self.ceiling_rate if self.ceiling_rate else 0.0
        return {
            "url": self.url,
            "lines": self.lines,
            "batch": self.batch,
            "concurrency": self.concurrency,
            "ceiling": {"seconds": round(self.ceiling_seconds, 3), "lines_per_s": round(self.ceiling_rate)},
            "agent": {
                "seconds": round(self.agent_seconds, 3),
                "lines_per_s": round(self.agent_rate),
                "rss_mb": round(self.agent_rss_mb, 1),
            },
            "ratio": round(ratio, 3),
            "documents": self.documents,
            "duplicates": self.duplicates,
            **self.extra,
        }


class _Http:
    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 9200

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
        finally:
            conn.close()


def write_lines(path: Path, lines: int, line_bytes: int) -> list[str]:
    factory = LineFactory("json", line_bytes)
    out: list[str] = []
    with path.open("w") as f:
        for first in range(0, lines, 10_000):
            batch = factory.batch(first, min(10_000, lines - first), time.time_ns())
            f.write("\n".join(batch.lines) + "\n")
            out += batch.lines
    return out


def _ceiling(
    url: str,
    index: str,
    lines: list[str],
    batch: int,
    concurrency: int,
    prefix: str = "",
    headers: dict[str, str] | None = None,
) -> float:
    """Post every line with a bare client to ``url`` + ``prefix`` + ``/_bulk`` (with ``headers``
    added); seconds from the first request to the last answer."""
    head = b'{"@timestamp":"' + rfc3339_ns(time.time_ns()).encode() + b'","message":'
    tail = b',"level":"info","source_type":"file","source_id":"bench","labels":{},"fields":{}}'
    bodies: list[bytes] = []
    for first in range(0, len(lines), batch):
        parts = []
        for i in range(first, min(first + batch, len(lines))):
            parts.append(b'{"create":{"_index":"' + index.encode() + b'","_id":"c' + str(i).encode() + b'"}}')
            parts.append(head + orjson.dumps(lines[i]) + tail)
        bodies.append(b"\n".join(parts) + b"\n")
    http_ = _Http(url)
    todo = list(range(len(bodies)))
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(http_.host, http_.port, timeout=120)
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    k = todo.pop()
                data = gzip.compress(bodies[k], 1)
                conn.request(
                    "POST",
                    prefix + "/_bulk?filter_path=errors",
                    body=data,
                    headers={
                        "Content-Type": "application/x-ndjson",
                        "Content-Encoding": "gzip",
                        **(headers or {}),
                    },
                )
                resp = conn.getresponse()
                answer = resp.read()
                if resp.status != 200 or orjson.loads(answer).get("errors"):
                    errors.append(f"{resp.status}: {answer[:300]!r}")
                    return
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    if errors:
        raise EsBenchError(f"the bare client's requests failed: {errors[0]}")
    return elapsed


def _count(http_: _Http, index: str) -> int:
    code, body = http_.call("GET", f"/{index}/_count")
    return int(body["count"]) if code == 200 else 0


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_es_bench(
    url: str,
    lines: int,
    out_dir: Path,
    batch: int = 1000,
    concurrency: int = 2,
    line_bytes: int = 150,
    timeout: float = 600.0,
    log: Any = print,
) -> EsBenchResult:
    run = out_dir / f"es-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    (run / "logs").mkdir(parents=True)
    http_ = _Http(url)
    code, info = http_.call("GET", "/")
    if code != 200:
        raise EsBenchError(f"{url} answered {code} to GET /")
    result = EsBenchResult(url, lines, batch, concurrency)
    result.extra["server"] = (
        info.get("version", {}).get("distribution", "elasticsearch")
        + " "
        + str(info.get("version", {}).get("number", ""))
    )
    tag = uuid.uuid4().hex[:8]
    ceiling_index, agent_index = f"bench-ceiling-{tag}", f"bench-agent-{tag}"
    again_index = f"bench-ceiling2-{tag}"
    for ix in (ceiling_index, agent_index, again_index):
        code, body = http_.call(
            "PUT", f"/{ix}", {"settings": {"number_of_shards": 1, "number_of_replicas": 0}}
        )
        if code != 200:
            raise EsBenchError(f"creating index {ix}: {code} {body}")
    try:
        log(f"writing {lines} lines of {line_bytes} bytes")
        sent = write_lines(run / "logs" / "bench.log", lines, line_bytes)
        log("ceiling: bare client")
        result.ceiling_seconds = _ceiling(url, ceiling_index, sent, batch, concurrency)
        log(f"ceiling: {result.ceiling_rate:,.0f} lines/s")
        result.agent_seconds, result.agent_rss_mb = _agent(
            run, url, agent_index, lines, batch, concurrency, timeout, http_, log
        )
        log(f"agent: {result.agent_rate:,.0f} lines/s")
        log("ceiling again: bare client")
        again = _ceiling(url, again_index, sent, batch, concurrency)
        result.extra["ceiling_runs_seconds"] = [round(result.ceiling_seconds, 3), round(again, 3)]
        result.ceiling_seconds = min(result.ceiling_seconds, again)
        log(f"ceiling: {result.ceiling_rate:,.0f} lines/s (the faster run)")
        http_.call("POST", f"/{agent_index}/_refresh")
        result.documents = _count(http_, agent_index)
        code, agg = http_.call(
            "POST",
            f"/{agent_index}/_search",
            {
                "size": 0,
                "aggs": {"dup": {"terms": {"field": "message.keyword", "min_doc_count": 2, "size": 10}}},
            },
        )
        result.duplicates = len(agg["aggregations"]["dup"]["buckets"]) if code == 200 else -1
    finally:
        for ix in (ceiling_index, agent_index, again_index):
            http_.call("DELETE", f"/{ix}")
    (run / "result.json").write_text(json.dumps(result.as_dict(), indent=2))
    return result


def _agent(
    run: Path,
    url: str,
    index: str,
    lines: int,
    batch: int,
    concurrency: int,
    timeout: float,
    http_: _Http,
    log: Any,
) -> tuple[float, float]:
    config = {
        "app": {"log_format": "json", "log_level": "warning", "log_file": str(run / "agent.log")},
        "server": {"host": "127.0.0.1", "port": free_port()},
        "metrics": {"host": "127.0.0.1", "port": free_port()},
        "files_config": {"watch_directories": [str(run / "logs")], "read_from": "beginning"},
        "dispatcher": {"dlq_config": {"directory": str(run / "dlq")}},
        "positions": {"directory": str(run / "positions")},
        "sinks": {
            "elasticsearch": {
                "enabled": True,
                "endpoints": [url],
                "index": index,
                "batch": {"max_events": batch, "max_bytes": 64 << 20},
                "concurrency": concurrency,
                "compression_level": 1,
            }
        },
    }
    path = run / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    out = (run / "agent.stderr").open("wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "log_capturer", "run", "--config", str(path), "--no-status"],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
    )
    started = time.monotonic()
    rss = 0.0
    try:
        deadline = started + timeout
        while True:
            if proc.poll() is not None:
                raise EsBenchError(f"the agent exited {proc.returncode}; see {run / 'agent.stderr'}")
            rss = max(rss, _rss_mb(proc.pid))
            http_.call("POST", f"/{index}/_refresh")
            if _count(http_, index) >= lines:
                return time.monotonic() - started, rss
            if time.monotonic() > deadline:
                raise EsBenchError(f"the agent did not index {lines} lines within {timeout:.0f}s")
            time.sleep(0.25)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()


# -- into VictoriaLogs' _bulk endpoint ---------------------------------------------------------------

#: Where VictoriaLogs takes the Elasticsearch bulk API, and the headers naming the documents'
#: message and time fields (the agent's record: ``message``, ``@timestamp``).
VL_BULK_PREFIX = "/insert/elasticsearch"
VL_HEADERS = {"VL-Msg-Field": "message", "VL-Time-Field": "@timestamp"}


def run_es_victorialogs_bench(
    lines: int,
    out_dir: Path,
    batch: int = 1000,
    concurrency: int = 2,
    line_bytes: int = 150,
    timeout: float = 600.0,
    log: Any = print,
) -> dict[str, Any]:
    """The agent's Elasticsearch sink into a local VictoriaLogs' ``_bulk`` endpoint, against the
    bare client of :func:`_ceiling` posting the same documents in the same batches to it.

    The agent is timed as ``bench --sink loki`` times it: from its first acknowledged line until
    the file's checkpoint reaches the end (its start-up left out, as the bare client's); the lines
    are then counted in the server with LogsQL (every line once: ``count()``, ``count_uniq(_msg)``).
    VictoriaLogs has no index to keep apart: each run's documents carry a ``bench`` field
    (``VL-Extra-Fields``). The bare client runs before the agent and after it; the faster counts.
    """
    from log_capturer.devtools.bench.system import get_json, load_average, tree_cpu_seconds
    from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs

    name = f"es-vl-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    run = (out_dir / name).resolve()
    logs = run / "logs"
    logs.mkdir(parents=True)
    server = LocalVictoriaLogs(run / "victorialogs", port=free_port(), log=log)
    server.up(timeout=600)
    try:
        path = logs / "bench.log"
        log(f"writing {lines:,} lines of {line_bytes} bytes")
        sent = write_lines(path, lines, line_bytes)
        size = path.stat().st_size

        def ceiling(tag: str) -> float:
            hdrs = {**VL_HEADERS, "VL-Extra-Fields": f"bench={name}-{tag}"}
            return _ceiling(server.url, "bench", sent, batch, concurrency, VL_BULK_PREFIX, hdrs)

        log("ceiling: bare client")
        first_ceiling = ceiling("ceiling")
        api, metrics = free_port(), free_port()
        config = {
            "app": {"log_format": "json", "log_level": "warning", "log_file": str(run / "agent.log")},
            "server": {"host": "127.0.0.1", "port": api},
            "metrics": {"host": "127.0.0.1", "port": metrics},
            "files_config": {"watch_directories": [str(logs)], "read_from": "beginning"},
            "dispatcher": {"dlq_config": {"directory": str(run / "dlq")}},
            "positions": {"directory": str(run / "positions"), "flush_interval": "200ms"},
            "sinks": {
                "kafka": {"enabled": False},
                "elasticsearch": {
                    "enabled": True,
                    "endpoints": [server.url + VL_BULK_PREFIX],
                    "index": "bench",
                    "batch": {"max_events": batch, "max_bytes": 64 << 20},
                    "concurrency": concurrency,
                    "compression_level": 1,
                    "headers": {**VL_HEADERS, "VL-Extra-Fields": f"bench={name}-agent"},
                },
            },
        }
        cfg_path = run / "agent.yaml"
        cfg_path.write_text(yaml.safe_dump(config))
        log(f"agent: {lines:,} lines ({size / 1e6:.1f} MB) -> VictoriaLogs at {server.url}{VL_BULK_PREFIX}")
        with (run / "agent.stderr").open("wb") as out:
            agent = subprocess.Popen(
                [sys.executable, "-m", "log_capturer", "run", "--config", str(cfg_path), "--no-status"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=run,
            )
        first = end = cpu_first = 0.0
        rss = 0.0
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and agent.poll() is None:
                try:
                    pos = get_json(f"http://127.0.0.1:{api}/positions")["files"].get(str(path), {})
                except OSError:
                    time.sleep(0.05)
                    continue
                offset = int(pos.get("offset", 0))
                now = time.monotonic()
                if offset > 0 and not first:
                    first = now
                    cpu_first = tree_cpu_seconds(agent.pid) or 0.0
                rss = max(rss, _rss_mb(agent.pid))
                if offset >= size:
                    end = now
                    break
                time.sleep(0.1)  # the agent's API answers on the agent's own CPU: not too often
            cpu_end = tree_cpu_seconds(agent.pid)
        finally:
            if agent.poll() is None:
                agent.terminate()
                agent.wait(60)
        if not end:
            raise EsBenchError(
                f"the agent did not ship the file within {timeout:g}s; see {run / 'agent.log'}"
            )
        cpu = round(cpu_end - cpu_first, 2) if cpu_end is not None else None
        agent_rate = lines / max(end - first, 1e-9)
        log(f"agent: {agent_rate:,.0f} lines/s")
        log("ceiling again: bare client")
        again = ceiling("ceiling2")
        ceiling_seconds = min(first_ceiling, again)
        server.flush()
        rows = server.query(f'bench:="{name}-agent" | stats count() as n, count_uniq(_msg) as u')
        held, unique = int(rows[0]["n"]), int(rows[0]["u"])
        ceiling_held = server.count(f'bench:="{name}-ceiling"')
        ceiling_rate = lines / ceiling_seconds
        ratio = agent_rate / ceiling_rate
        log(f"bare client: {ceiling_rate:,.0f} lines/s (the faster run); ratio {ratio:.2f}")
        result: dict[str, Any] = {
            "run": name,
            "server": "victorialogs " + server.url + VL_BULK_PREFIX,
            "lines": lines,
            "line_bytes": line_bytes,
            "batch": batch,
            "concurrency": concurrency,
            "agent_lines_per_second": round(agent_rate),
            "agent_seconds": round(end - first, 3),
            "agent_cpu_seconds": cpu,  # from the first acknowledged line to the last
            "agent_cpu_us_per_line": round(cpu * 1e6 / lines, 2) if cpu is not None else None,
            "agent_rss_mb": round(rss, 1),
            "ceiling_lines_per_second": round(ceiling_rate),
            "ceiling_runs_seconds": [round(first_ceiling, 3), round(again, 3)],
            "ratio": round(ratio, 3),
            "held": held,
            "distinct": unique,
            "lost": lines - unique,
            "duplicated": held - unique,
            "ceiling_held": ceiling_held,
            "load_average": load_average(),
            "cores": os.cpu_count(),
        }
        (run / "result.json").write_text(json.dumps(result, indent=2))
        return result
    finally:
        server.down()
