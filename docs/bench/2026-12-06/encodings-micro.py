"""CPU per line of the Kafka sink's request building (encode + topics + keys + tally), in process.
usage: python micro.py [codec]   (no codec: the default config, which the old code also runs)"""
import sys, time
from log_capturer.devtools.generate import LineFactory
from log_capturer.processing import Analyzer
from log_capturer.record import Chunk, Origin
from log_capturer.sinks.kafka.config import KafkaSinkConfig
from log_capturer.sinks.kafka.request import RequestBuilder

codec = sys.argv[1] if len(sys.argv) > 1 else None
section = {"enabled": True}
if codec:
    section["encoding"] = {"codec": codec}
cfg = KafkaSinkConfig.model_validate(section)
fac = LineFactory("json", 150)
origin = Origin("file", "/tmp/bench/app-1.log", {})
an = Analyzer("tenant_id")
chunks = []
for c in range(100):
    b = fac.batch(c * 2000, 2000, time.time_ns())
    ch = Chunk(origin, b.lines)
    an.analyze(ch)
    chunks.append(ch)
n = sum(len(c) for c in chunks)
rb = RequestBuilder(cfg, tuple(float(x) for x in (64, 128, 256, 512, 1024, 4096)), lambda t: None)
best = None
for rep in range(7):
    t0 = time.process_time()
    for ch in chunks:
        rb.build(ch)
    dt = time.process_time() - t0
    best = dt if best is None else min(best, dt)
print(f"{codec or 'default'} {best / n * 1e9:.0f} ns/line (min of 7 over {n} lines)")
