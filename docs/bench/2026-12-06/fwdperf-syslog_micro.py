"""Syslog's per-batch work after the socket: parse each frame, build the chunk as the source
does, analyse it as the dispatcher does, encode it as the Kafka sink does (2,000 RFC 5424
messages with distinct times, 40 rounds)."""
import os
import time
from log_capturer.processing import Analyzer
from log_capturer.record import Chunk, Origin
from log_capturer.sinks.kafka.encode import encode_chunk
from log_capturer.sources.syslog.parse import parse

frames = [
    f"<165>1 2026-12-06T10:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}Z host{i % 7} app{i % 5} {1000 + i} ID47 "
    f'[exampleSDID@32473 iut="3" eventSource="Application"] {{"level":"info","tenant_id":"t{i % 16}","msg":"'
    + "x" * 60 + f' {i}"}}'
    for i in range(2000)
]
origin = Origin("syslog", "tcp://127.0.0.1")
analyzer = Analyzer("tenant_id")
for _ in range(int(os.environ.get("ROUNDS", "40"))):
    lines, meta, stamps, levels = [], [], [], []
    read_ns = time.time_ns()
    for text in frames:
        p = parse(text)
        fields = p.fields
        fields["source_ip"] = "127.0.0.1"
        lines.append(p.message)
        meta.append(fields)
        stamps.append(read_ns if p.ts is None else p.ts)
        levels.append(p.level)
    chunk = Chunk(origin, lines, read_time_ns=read_ns, meta=meta)
    chunk.timestamps = stamps
    chunk.preset_levels = levels
    analyzer.analyze(chunk)
    encode_chunk(chunk, "tenant_id")
