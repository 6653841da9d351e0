"""The forward input's per-batch work after the socket, as the agent runs it: the stream
decoded, the messages decoded, the records made into chunks, analysed, encoded for Kafka.
2,000-record Forward messages of {log, level, labels: {tenant_id}} (16 tenants) with distinct
EventTimes, 100 rounds; argv[1] = 'log' for {log} records. The objects alive after imports are
frozen as the agent does once started (gc.freeze), in both trees (the code before did not)."""
import gc
import os
import struct
import sys

import msgpack

from log_capturer.processing import Analyzer
from log_capturer.record import Origin
from log_capturer.sinks.kafka.encode import encode_chunk
from log_capturer.sources.forward import protocol
from log_capturer.sources.forward.config import ForwardConfig
from log_capturer.sources.http.source import Records

shape = sys.argv[1] if len(sys.argv) > 1 else "fields"
freeze = len(sys.argv) > 2 and sys.argv[2] == "freeze"
N = 2000
ents = []
for i in range(N):
    line = (
        '{"time":"2026-11-25T07:00:00.123456Z","level":"info","seq":%d,"tenant_id":"tenant-%02d","msg":"' % (i, i % 16)
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
if freeze:
    gc.collect()
    gc.freeze()
decoder = protocol.unpacker(64 << 20)
for _ in range(int(os.environ.get("ROUNDS", "100"))):
    values = protocol.feed(decoder, payload)
    plain = getattr(decoder, "plain", None)
    if plain is None:
        messages = [protocol.decode(v, n, 64 << 20) for n, v in enumerate(values, 1)]
    else:
        messages = [protocol.decode(v, n, 64 << 20, plain) for n, v in enumerate(values, 1)]
    chunks, bad = records.chunks(messages[0].items, base)
    assert not bad
    for c in chunks:
        analyzer.analyze(c)
        encode_chunk(c, "tenant_id")
