"""``log-capturer bench --sink loki``: file -> agent -> Loki push API (a real VictoriaLogs), against
a bare client posting the same lines in the same batch sizes to the same server.

Sequence: start VictoriaLogs in the run folder -> write the file (``lines`` lines, each with its
sequence number) -> start the agent (a file source, only the Loki sink) and time it from its
first acknowledged line until the file's checkpoint reaches the end -> stop it -> count what the
server holds (every line once: ``count()`` and ``count_uniq(seq)`` over LogsQL; the agent sends
each line as it was read, ``line_format: message``, and VictoriaLogs parses the JSON line into
fields) ->
the ceiling: the same lines, the same ``batch_size``, ``max_in_flight`` pushes at once, as
protobuf + snappy written by a few lines of code here (one stream, no labels logic, no
acknowledgement accounting), timed from the first push to the last answer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import cramjam
from rich.console import Console

from log_capturer.devtools.bench.system import (
    file_agent_config,
    finish_result,
    get_json,
    start_agent,
    stop_agent,
    time_to_checkpoint,
)
from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.victorialogs_local import LOKI_PUSH_PATH, LocalVictoriaLogs

#: The issue's targets.
TARGET_RATE = 100_000
TARGET_RATIO = 0.7


LEVELS = ("info", "info", "info", "warn", "error", "debug")


def _line(i: int, width: int) -> str:
    """A JSON line of about ``width`` bytes with its sequence number (as ``bench``'s default format)."""
    head = (
        f'{{"ts":"2026-12-06T07:00:00Z","level":"{LEVELS[i % 6]}","seq":{i},"user":"alice","msg":"checkout '
    )
    return head + "x" * max(0, width - len(head) - 2) + '"}'


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _msg(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def bare_push(lines: list[bytes], labels: bytes, ts: int) -> bytes:
    """One stream's PushRequest, snappy-compressed: what any Loki client must send."""
    sec, nanos = divmod(ts, 1_000_000_000)
    stamp = _msg(0x0A, b"\x08" + _varint(sec) + b"\x10" + _varint(nanos))
    entries = b"".join(_msg(0x12, stamp + _msg(0x12, line)) for line in lines)
    return bytes(cramjam.snappy.compress_raw(_msg(0x0A, _msg(0x0A, labels) + entries)))


async def _ceiling(url: str, lines: list[bytes], batch: int, in_flight: int, labels: bytes) -> float:
    import aiohttp

    queue: asyncio.Queue[list[bytes]] = asyncio.Queue()
    for i in range(0, len(lines), batch):
        queue.put_nowait(lines[i : i + batch])
    headers = {"Content-Type": "application/x-protobuf"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            part = queue.get_nowait()
            body = bare_push(part, labels, time.time_ns())
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"the server answered {resp.status}")

    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(in_flight)))
    return time.monotonic() - started


def run_loki_bench(
    lines: int,
    out_dir: Path,
    console: Console,
    batch_size: int = 1000,
    line_bytes: int = 150,
    max_in_flight: int = 2,
    timeout: float = 600.0,
) -> dict[str, Any]:
    run = f"loki-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    folder = (out_dir / run).resolve()
    logs = folder / "logs"
    logs.mkdir(parents=True)
    server = LocalVictoriaLogs(folder / "victorialogs", port=free_port(), log=console.print)
    server.up(timeout=600)
    try:
        path = logs / "bench.log"
        text = [_line(i, line_bytes) for i in range(lines)]
        path.write_text("\n".join(text) + "\n")
        size = path.stat().st_size
        api, metrics = free_port(), free_port()
        cfg = file_agent_config(
            folder,
            logs,
            api,
            metrics,
            app={"log_format": "json", "log_level": "warn"},
            flush_interval="200ms",
            sinks={
                "kafka": {"enabled": False},
                "loki": {
                    "enabled": True,
                    "url": server.url,
                    "push_endpoint": LOKI_PUSH_PATH,
                    "default_labels": {"job": run},
                    "batch_size": batch_size,
                    "max_in_flight": max_in_flight,
                    # The line as it was read, as the bare client sends it: the same bytes.
                    "line_format": "message",
                },
            },
        )
        console.print(f"{lines:,} lines ({size / 1e6:.1f} MB) -> agent -> VictoriaLogs at {server.url}")
        agent = start_agent(cfg, folder, folder / "agent.log")
        try:
            timing = time_to_checkpoint(agent, api, path, size, timeout)
            stats = get_json(f"http://127.0.0.1:{api}/stats")["sinks"]["loki_sink"] if timing.end else {}
        finally:
            stop_agent(agent)
        if not timing.end:
            raise RuntimeError(
                f"the agent did not ship the file within {timeout:g}s; see {folder / 'agent.log'}"
            )
        cpu = timing.cpu_seconds
        rows = server.query(f'{{job="{run}"}} | stats count() as n, count_uniq(seq) as u')
        held, unique = int(rows[0]["n"]), int(rows[0]["u"])
        agent_rate = lines / max(timing.seconds, 1e-9)
        console.print(f"agent: {agent_rate:,.0f} lines/s; the server holds {held:,} ({unique:,} distinct)")
        labels = f'{{job="{run}-ceiling"}}'.encode()
        encoded = [t.encode() for t in text]
        elapsed = asyncio.run(_ceiling(server.push_url, encoded, batch_size, max_in_flight, labels))
        ceiling_rate = lines / elapsed
        ceiling_held = server.count(f'{{job="{run}-ceiling"}}')
        console.print(f"bare client: {ceiling_rate:,.0f} lines/s (the server holds {ceiling_held:,})")
        ratio = agent_rate / ceiling_rate
        targets = {
            f">= {TARGET_RATE:,} lines/s": agent_rate >= TARGET_RATE,
            f">= {TARGET_RATIO}x the ceiling": ratio >= TARGET_RATIO,
        }
        result: dict[str, Any] = {
            "run": run,
            "lines": lines,
            "line_bytes": line_bytes,
            "batch_size": batch_size,
            "max_in_flight": max_in_flight,
            "agent_lines_per_second": round(agent_rate),
            "agent_seconds": round(timing.seconds, 3),
            "agent_cpu_seconds": cpu,  # from the first acknowledged line to the last
            "agent_cpu_us_per_line": round(cpu * 1e6 / lines, 2) if cpu is not None else None,
            "ceiling_lines_per_second": round(ceiling_rate),
            "ratio": round(ratio, 3),
            "held": held,
            "distinct": unique,
            "lost": lines - unique,
            "duplicated": held - unique,
            "ceiling_held": ceiling_held,
            "sink_stats": {k: stats.get(k) for k in ("requests", "entries_pushed", "bytes_sent", "retried")},
            "targets": targets,
        }
        return finish_result(folder, result, console)
    finally:
        server.down()
