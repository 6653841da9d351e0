"""The forward input's per-batch work after the socket, as the agent runs it, stage by stage:
the stream decoded (``feed``), the messages decoded (``decode``), the records made into chunks
(``chunks``), analysed and encoded for Kafka. 2,000-record Forward messages of {log, level,
labels: {tenant_id}} (16 tenants) with distinct EventTimes, 100 rounds; argv[1] = 'log' for
{log} records. Prints CPU (process_time) us per record of each stage and in all. The objects
alive after imports are frozen as the agent does once started. A stage's figure includes
freeing what the round before it left (the previous round's values are freed when replaced)."""

import gc
import os
import struct
import sys
import time

import msgpack

from log_capturer.processing import Analyzer
from log_capturer.record import Origin
from log_capturer.sinks.kafka.encode import encode_chunk
from log_capturer.sources.forward import protocol
from log_capturer.sources.forward.config import ForwardConfig
from log_capturer.sources.http.source import Records

shape = sys.argv[1] if len(sys.argv) > 1 else "fields"
N = 2000
ents = []
for i in range(N):
    line = (
        '{"time":"2026-11-25T07:00:00.123456Z","level":"info","seq":%d,"tenant_id":"tenant-%02d","msg":"'
        % (i, i % 16)
        + "x" * 60
        + '"}'
    )
    rec = {"log": line}
    if shape == "fields":
        rec["level"] = ("info", "warn", "error", "debug")[i % 4]
        rec["labels"] = {"tenant_id": f"tenant-{i % 16:02d}"}
    ents.append([msgpack.ExtType(0, struct.pack(">II", 1_764_000_000 + i // 1000, i * 1000)), rec])
payload = msgpack.packb(["app.log", ents, {"chunk": "abc"}])
records = Records(ForwardConfig(enabled=True), "forward")
base = Origin("forward", "forward://127.0.0.1", {"tag": "app.log"})
analyzer = Analyzer("tenant_id")
gc.collect()
gc.freeze()
decoder = protocol.unpacker(64 << 20)
T = [0.0] * 4
R = int(os.environ.get("ROUNDS", "100"))
pt = time.process_time
for _ in range(R):
    t0 = pt()
    values = protocol.feed(decoder, payload)
    plain = decoder.plain
    t1 = pt()
    messages = [protocol.decode(v, n, 64 << 20, plain) for n, v in enumerate(values, 1)]
    t2 = pt()
    chunks, bad = records.chunks(messages[0].items, base)
    assert not bad
    t3 = pt()
    for c in chunks:
        analyzer.analyze(c)
        encode_chunk(c, "tenant_id")
    t4 = pt()
    for i, (a, b) in enumerate(((t0, t1), (t1, t2), (t2, t3), (t3, t4))):
        T[i] += b - a
us = [x * 1e6 / (R * N) for x in T]
print(
    f"{shape}: us/record feed {us[0]:.2f} decode {us[1]:.2f} chunks {us[2]:.2f} "
    f"analyze+encode {us[3]:.2f} total {sum(us):.2f} ({len(chunks)} chunks a message)"
)
