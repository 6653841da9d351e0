"""``log-capturer bench --source kafka``: topic -> consumer (the agent with a ``kafka`` source) ->
a local VictoriaLogs (``--sink loki``: its Loki push API; ``--sink elasticsearch``: its ``_bulk``
endpoint), against a bare confluent-kafka consumer pushing the same batches to the same server.

Sequence: start Kafka (unless a bootstrap address is given) and VictoriaLogs in the run folder ->
create a topic of ``partitions`` partitions and fill it with ``lines`` records in the agent's own
record shape (what the Kafka sink writes: ``sinks.kafka.encode``; each message a JSON line with
its sequence number), before any timing ->

the ceiling: one bare consumer (confluent-kafka, its own group) reads the topic; each poll's
records are decoded (orjson) and pushed in batches of ``batch_size`` by ``max_in_flight`` threads
with the standard library's HTTP client, with the bodies of the sink ceilings
(:func:`.loki.bare_push`: protobuf + snappy; or ``_bulk`` NDJSON + gzip level 1, the record
itself as the document); no labels logic, no acknowledgement accounting; timed from the first
poll that returned records to the last answer and its offsets committed ->

the agent: ``consumers`` processes of ``log-capturer run`` with only a ``kafka`` source and the
one sink, in one group; timed from the last look at their ``/stats`` that saw nothing consumed
until the group's committed offsets reach the end of every partition (the store then holds
every line: checked after, ``count()`` and ``count_uniq`` over LogsQL: lost and duplicated).
CPU: the agents' (user + system) over that time.
"""

from __future__ import annotations

import http.client
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from log_capturer.devtools.bench.elasticsearch import VL_BULK_PREFIX
from log_capturer.devtools.bench.loki import TARGET_RATE, TARGET_RATIO, _line, bare_push
from log_capturer.devtools.bench.profile import Profiler, summarize
from log_capturer.devtools.bench.system import (
    finish_result,
    get_json,
    rss_mib,
    start_agent,
    stop_agent,
    thread_cpu,
    tree_cpu_seconds,
)
from log_capturer.devtools.kafka_local import LocalKafka, free_port
from log_capturer.devtools.victorialogs_local import LOKI_PUSH_PATH, LocalVictoriaLogs
from log_capturer.record import Chunk, Origin
from log_capturer.sinks.kafka.encode import encode_chunk

SINKS = ("loki", "elasticsearch")
LEVELS = ("info", "info", "info", "warn", "error", "debug")


class KafkaBenchError(RuntimeError):
    """The benchmark could not run (a server, the agent); the message says why."""


@dataclass
class Options:
    sink: str = "loki"
    lines: int = 500_000
    consumers: int = 1
    partitions: int = 2
    batch_size: int = 1000
    max_in_flight: int = 2
    line_bytes: int = 150
    bootstrap: str | None = None
    agent_config: dict[str, Any] | None = None
    timeout: float = 600.0
    profile: bool = False


def fill_topic(bootstrap: str, topic: str, partitions: int, lines: int, line_bytes: int) -> float:
    """Create ``topic`` and write ``lines`` records in the agent's record shape, spread evenly
    over its partitions (lz4 batches); seconds it took."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        fut.result(60)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1 << 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1 << 20,
            "acks": "all",
        }
    )
    origin = Origin("file", "/var/log/bench.log", {"app": "bench"})
    started = time.monotonic()
    step = 10_000
    for first in range(0, lines, step):
        n = min(step, lines - first)
        chunk = Chunk(origin, [_line(i, line_bytes) for i in range(first, first + n)])
        chunk.levels = [LEVELS[i % 6] for i in range(first, first + n)]
        for k, value in enumerate(encode_chunk(chunk, None)):
            while True:
                try:
                    producer.produce(topic, value, partition=(first + k) % partitions)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120):
        raise KafkaBenchError(f"writing {lines:,} records to {topic} did not finish within 120 s")
    return time.monotonic() - started


class Committed:
    """The group's committed offsets over the topic's partitions, summed (records before them);
    one consumer that never joins the group, asked again and again."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]

    def total(self) -> int:
        got = self._consumer.committed(self._tps, timeout=10)
        return sum(max(0, tp.offset) for tp in got)

    def close(self) -> None:
        self._consumer.close()


# -- the ceiling -------------------------------------------------------------------------------------


def _loki_body(values: list[bytes], labels: bytes) -> bytes:
    lines = [orjson.loads(v)["message"].encode() for v in values]
    return bare_push(lines, labels, time.time_ns())


def _bulk_body(values: list[bytes], action: bytes) -> bytes:
    import gzip

    parts: list[bytes] = []
    for v in values:
        orjson.loads(v)  # a bare client checks what it forwards is JSON, as the agent does
        parts.append(action)
        parts.append(v)
    return gzip.compress(b"\n".join(parts) + b"\n", 1)


def ceiling(
    bootstrap: str, topic: str, lines: int, sink: str, url: str, batch: int, in_flight: int, tag: str
) -> tuple[float, float]:
    """The bare consumer (see the module docstring): (seconds, CPU seconds of this process)."""
    from confluent_kafka import Consumer

    host, port = url.split("//", 1)[1].split(":")
    if sink == "loki":
        path = LOKI_PUSH_PATH
        headers = {"Content-Type": "application/x-protobuf"}
        labels = f'{{job="{tag}"}}'.encode()
    else:
        path = VL_BULK_PREFIX + "/_bulk"
        headers = {
            "Content-Type": "application/x-ndjson",
            "Content-Encoding": "gzip",
            "VL-Msg-Field": "message",
            "VL-Time-Field": "timestamp",
            "VL-Extra-Fields": f"bench={tag}",
        }
        action = b'{"create":{"_index":"bench"}}'
    work: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=in_flight * 2)
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            while True:
                values = work.get()
                if values is None:
                    return
                body = _loki_body(values, labels) if sink == "loki" else _bulk_body(values, action)
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                answer = resp.read()
                if resp.status >= 300 or (sink != "loki" and orjson.loads(answer).get("errors")):
                    errors.append(f"{resp.status}: {answer[:300]!r}")
        finally:
            conn.close()

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{tag}-group",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 << 20,
        }
    )
    consumer.subscribe([topic])
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(in_flight)]
    for t in threads:
        t.start()
    started = 0.0
    cpu0 = 0.0
    got = 0
    pending: list[bytes] = []
    deadline = time.monotonic() + 600
    try:
        while got < lines and time.monotonic() < deadline and not errors:
            msgs = consumer.consume(batch, 1.0)
            if not msgs:
                continue
            if not started:
                started, cpu0 = time.monotonic(), time.process_time()
            for m in msgs:
                if m.error() is None:
                    pending.append(m.value() or b"")
            got += len(msgs)
            while len(pending) >= batch or (pending and got >= lines):
                work.put(pending[:batch])
                pending = pending[batch:]
    finally:
        for _ in threads:
            work.put(None)
        for t in threads:
            t.join(120)
        if got and not errors:
            consumer.commit(asynchronous=False)  # the offsets at the end, as the agent's
        elapsed = time.monotonic() - started
        cpu = time.process_time() - cpu0
        consumer.close()
    if errors:
        raise KafkaBenchError(f"the bare client's requests failed: {errors[0]}")
    if got < lines:
        raise KafkaBenchError(f"the bare consumer read {got:,} of {lines:,} records within 600 s")
    return elapsed, cpu


# -- the agent ---------------------------------------------------------------------------------------


def agent_config(
    folder: Path, bootstrap: str, topic: str, group: str, sink: str, url: str, opts: Options, tag: str
) -> tuple[dict[str, Any], int]:
    api = free_port()
    if sink == "loki":
        sinks: dict[str, Any] = {
            "loki": {
                "enabled": True,
                "url": url,
                "push_endpoint": LOKI_PUSH_PATH,
                "default_labels": {"job": tag},
                "batch_size": opts.batch_size,
                "max_in_flight": opts.max_in_flight,
                "line_format": "message",
            }
        }
    else:
        sinks = {
            "elasticsearch": {
                "enabled": True,
                "endpoints": [url + VL_BULK_PREFIX],
                "index": "bench",
                "batch": {"max_events": opts.batch_size, "max_bytes": 64 << 20},
                "concurrency": opts.max_in_flight,
                "compression_level": 1,
                "headers": {
                    "VL-Msg-Field": "message",
                    "VL-Time-Field": "@timestamp",
                    "VL-Extra-Fields": f"bench={tag}",
                },
            }
        }
    cfg: dict[str, Any] = {
        "app": {"log_format": "json", "log_level": "warning", "log_file": str(folder / "agent.log")},
        "server": {"host": "127.0.0.1", "port": api},
        "metrics": {"host": "127.0.0.1", "port": free_port()},
        "files_config": {"enabled": False},
        "dispatcher": {"dlq_config": {"directory": str(folder / "dlq")}},
        "positions": {"directory": str(folder / "positions")},
        "kafka": {
            "enabled": True,
            "brokers": bootstrap.split(","),
            "group_id": group,
            "topics": [topic],
            "auto_offset_reset": "earliest",
            "commit_interval": "200ms",
        },
        "sinks": {"kafka": {"enabled": False}, **sinks},
    }
    for key, value in (opts.agent_config or {}).items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    # Where it reads and writes is always the bench's.
    cfg["kafka"].update(brokers=bootstrap.split(","), group_id=group, topics=[topic])
    cfg["server"]["port"] = api
    return cfg, api


def _stats(apis: list[int]) -> list[dict[str, Any]] | None:
    """Each agent's /stats (an agent that does not answer yet: as one that consumed nothing);
    None when none answers."""
    out = []
    for api in apis:
        try:
            out.append(get_json(f"http://127.0.0.1:{api}/stats"))
        except (OSError, ValueError):
            out.append(
                {"kafka": {"consumed": 0, "in_flight": 0, "paused": False}, "dispatcher": {"queue_size": 0}}
            )
    return None if all(s["kafka"].get("rebalances") is None for s in out) else out


def _sample(t: float, stats: list[dict[str, Any]]) -> dict[str, Any]:
    """What the timeline (``timeline.jsonl`` in the run folder) keeps of the agents' /stats."""
    return {
        "t": round(t, 3),
        "agents": [
            {
                "consumed": s["kafka"]["consumed"],
                "in_flight": s["kafka"]["in_flight"],
                "paused": s["kafka"]["paused"],
                "queue": s["dispatcher"]["queue_size"],
            }
            for s in stats
        ],
    }


def run_agents(
    folder: Path, bootstrap: str, topic: str, sink: str, url: str, opts: Options, tag: str
) -> dict[str, Any]:
    """Start ``opts.consumers`` agents in one group and time them (see the module docstring)."""
    group = f"{tag}-group"
    agents = []
    apis = []
    profilers: list[Profiler] = []
    timeline: list[dict[str, Any]] = []
    summaries: list[str] = []
    committed = Committed(bootstrap, group, topic, opts.partitions)
    threads_first: list[dict[str, float]] = []
    threads_end: list[dict[str, float]] = []
    try:
        for k in range(opts.consumers):
            sub = folder / f"agent-{k + 1}"
            sub.mkdir()
            cfg, api = agent_config(sub, bootstrap, topic, group, sink, url, opts, tag)
            agents.append(start_agent(cfg, sub, sub / "agent.stderr"))
            apis.append(api)
            if opts.profile:
                profilers.append(Profiler(agents[-1].pid, sub / "profile.txt"))
        first = cpu_first = 0.0
        idle: tuple[float, float] | None = None
        end = 0.0
        rss = 0.0
        rounds = 0
        deadline = time.monotonic() + opts.timeout
        while time.monotonic() < deadline:
            for a in agents:
                if a.poll() is not None:
                    raise KafkaBenchError(f"an agent exited {a.returncode}; see its folder in {folder}")
            # Until the first record, /stats every round; then every fifth (the agents answer
            # on their own CPU), the committed offsets every round.
            stats = _stats(apis) if not first or rounds % 5 == 0 else None
            rounds += 1
            now = time.monotonic()
            consumed = None if stats is None else sum(s["kafka"]["consumed"] for s in stats)
            if stats is not None and consumed:
                timeline.append(_sample(now - (first or now), stats))
            cpu = sum(tree_cpu_seconds(a.pid) or 0.0 for a in agents)
            rss = max(rss, sum(rss_mib(a.pid) or 0.0 for a in agents))
            if consumed is None and not first:
                time.sleep(0.05)
                continue
            if consumed == 0:
                idle = (now, cpu)
                threads_first = [thread_cpu(a.pid) for a in agents]
            elif not first:
                if idle is None:
                    raise KafkaBenchError("records were consumed before the first look: run with more lines")
                first, cpu_first = idle
            if first and committed.total() >= opts.lines:
                end = time.monotonic()
                cpu_end = sum(tree_cpu_seconds(a.pid) or 0.0 for a in agents)
                threads_end = [thread_cpu(a.pid) for a in agents]
                break
            time.sleep(0.1)
        if not end:
            raise KafkaBenchError(
                f"the agents did not commit every offset within {opts.timeout:g}s; see {folder}"
            )
        kafka = [get_json(f"http://127.0.0.1:{api}/stats")["kafka"] for api in apis]
        (folder / "timeline.jsonl").write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in timeline))
        for p in profilers:
            problem = p.stop()
            summaries.append(problem or summarize(p.out))
            (p.out.parent / "profile-summary.txt").write_text(summaries[-1])
    finally:
        for p in profilers:
            p.stop()
        for a in agents:
            stop_agent(a)
        committed.close()
    return {
        "seconds": end - first,
        "cpu_seconds": round(cpu_end - cpu_first, 2),
        "rss_mb": round(rss, 1),
        "consumed": [s["consumed"] for s in kafka],
        "rebalances": [s["rebalances"] for s in kafka],
        "profiles": summaries,
        "thread_cpu_seconds": [
            {k: round(v - before.get(k, 0.0), 2) for k, v in after.items() if v - before.get(k, 0.0) >= 0.01}
            for before, after in zip(threads_first, threads_end, strict=True)
        ],
    }


def run_kafka_consumer_bench(opts: Options, out_dir: Path, console: Console) -> dict[str, Any]:
    if opts.sink not in SINKS:
        raise KafkaBenchError(f"--source kafka: --sink is loki or elasticsearch, not {opts.sink!r}")
    if opts.consumers < 1 or opts.partitions < opts.consumers:
        raise KafkaBenchError("--consumers must be at least 1 and at most --partitions")
    name = f"kafka-{opts.sink}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    folder = (out_dir / name).resolve()
    folder.mkdir(parents=True)
    kafka: LocalKafka | None = None
    server = LocalVictoriaLogs(folder / "victorialogs", port=free_port(), log=console.print)
    try:
        bootstrap = opts.bootstrap
        if bootstrap is None:
            kafka = LocalKafka(
                folder / "kafka", nodes=1, port=free_port(), controller_ports=[free_port()], log=console.print
            )
            kafka.up(timeout=180)
            state = kafka.load_state()
            assert state is not None
            bootstrap = state.bootstrap
        server.up(timeout=600)
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        console.print(f"writing {opts.lines:,} records to {topic} ({opts.partitions} partitions)")
        fill_seconds = fill_topic(bootstrap, topic, opts.partitions, opts.lines, opts.line_bytes)
        console.print(f"written in {fill_seconds:.1f} s; agent: {opts.consumers} consumer(s)")
        agent = run_agents(folder, bootstrap, topic, opts.sink, server.url, opts, f"{name}-agent")
        agent_rate = opts.lines / max(agent["seconds"], 1e-9)
        console.print(f"agent: {agent_rate:,.0f} lines/s")
        console.print("ceiling: a bare consumer")
        c_seconds, c_cpu = ceiling(
            bootstrap,
            topic,
            opts.lines,
            opts.sink,
            server.url,
            opts.batch_size,
            opts.max_in_flight,
            f"{name}-ceiling",
        )
        ceiling_rate = opts.lines / c_seconds
        ratio = agent_rate / ceiling_rate
        console.print(f"bare consumer: {ceiling_rate:,.0f} lines/s; ratio {ratio:.2f}")
        server.flush()
        if opts.sink == "loki":
            query = f'{{job="{name}-agent"}} | stats count() as n, count_uniq(seq) as u'
            ceiling_held = server.count(f'{{job="{name}-ceiling"}}')
        else:
            query = f'bench:="{name}-agent" | stats count() as n, count_uniq(_msg) as u'
            ceiling_held = server.count(f'bench:="{name}-ceiling"')
        rows = server.query(query)
        held, unique = int(rows[0]["n"]), int(rows[0]["u"])
        cpu = agent["cpu_seconds"]
        targets = {
            f">= {TARGET_RATE:,} lines/s": agent_rate >= TARGET_RATE,
            f">= {TARGET_RATIO}x the ceiling": ratio >= TARGET_RATIO,
        }
        result: dict[str, Any] = {
            "run": name,
            "sink": opts.sink,
            "server": "victorialogs " + server.url,
            "lines": opts.lines,
            "line_bytes": opts.line_bytes,
            "partitions": opts.partitions,
            "consumers": opts.consumers,
            "batch_size": opts.batch_size,
            "max_in_flight": opts.max_in_flight,
            "fill_seconds": round(fill_seconds, 2),
            "agent_lines_per_second": round(agent_rate),
            "agent_seconds": round(agent["seconds"], 3),
            "agent_cpu_seconds": cpu,
            "agent_cpu_us_per_line": round(cpu * 1e6 / opts.lines, 2),
            "agent_rss_mb": agent["rss_mb"],
            "agent_consumed": agent["consumed"],
            "agent_rebalances": agent["rebalances"],
            "agent_thread_cpu_seconds": agent["thread_cpu_seconds"],
            **({"agent_profiles": agent["profiles"]} if opts.profile else {}),
            "ceiling_lines_per_second": round(ceiling_rate),
            "ceiling_seconds": round(c_seconds, 3),
            "ceiling_cpu_seconds": round(c_cpu, 2),
            "ratio": round(ratio, 3),
            "held": held,
            "distinct": unique,
            "lost": opts.lines - unique,
            "duplicated": held - unique,
            "ceiling_held": ceiling_held,
            "targets": targets,
        }
        return finish_result(folder, result, console)
    finally:
        server.down()
        if kafka is not None:
            kafka.down()
