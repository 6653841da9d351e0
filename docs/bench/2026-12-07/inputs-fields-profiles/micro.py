"""In-process split of the per-record cost: decode -> chunks -> analyze -> Kafka request -> free.
No broker, no dispatcher. Usage: python micro.py [fwdlog|fwdfields|otlp|msgpack] [messages]"""
import gc, sys, time
from log_capturer.devtools.generate import LineFactory, ForwardTarget, HttpTarget
from log_capturer.record import Origin
from log_capturer.processing import Analyzer
from log_capturer.sinks.kafka.config import KafkaSinkConfig
from log_capturer.sinks.kafka.request import RequestBuilder
from log_capturer.sources.forward import protocol
from log_capturer.sources.forward.config import ForwardConfig
from log_capturer.sources.http.source import Records
from log_capturer.sources.otlp.config import OtlpConfig
from log_capturer.sources.otlp.decode import Decoder, PROTOBUF
import log_capturer
print(log_capturer.__file__)

kind = sys.argv[1]
n_msgs = int(sys.argv[2]) if len(sys.argv) > 2 else 50
per = 2000 if kind != "otlp" else 1000
lf = LineFactory()
emit = time.time_ns()
bodies = []
for i in range(n_msgs):
    b = lf.batch(i * per, per, emit)
    if kind.startswith("fwd"):
        t = object.__new__(ForwardTarget)
        t.record = "log" if kind == "fwdlog" else "fields"
        t.batch_lines, t.tag, t.compress, t.messages = per, "loggen", False, 0
        bodies.extend(m for _, m in t._messages(b))
    else:
        t = object.__new__(HttpTarget)
        t.batch_lines = per
        bodies.extend(t._otlp_bodies(b))
cfg = KafkaSinkConfig(
    enabled=True, brokers=["127.0.0.1:1"], topic="logs",
    priority_routing={"enabled": True, "high_topic": "h", "normal_topic": "n", "low_topic": "l"},
    partitioning={"enabled": True, "strategy": "hash", "key_field": "tenant_id"},
)
builder = RequestBuilder(cfg, (100.0, 1000.0, 10000.0), lambda t: None)
analyzer = Analyzer("tenant_id")
fcfg = ForwardConfig()
records = Records(fcfg, "forward")
base = Origin("forward", "forward://127.0.0.1", {"tag": "loggen"})
dec = Decoder(OtlpConfig())

def decode(body):
    if kind.startswith("fwd"):
        st = protocol.Stream(1 << 26)
        vals = st.feed(body)
        msgs = [protocol.decode(v, n, 1 << 26, st.plain) for n, v in enumerate(vals, 1)]
        items = [it for m in msgs for it in m.items]
        chunks, bad = records.chunks(items, base)
        return chunks
    chunks, bad = dec.decode(body, PROTOBUF)
    return chunks

T = dict.fromkeys(["decode", "analyze", "request", "free"], 0.0)
best = None
for rnd in range(5):
    t = dict.fromkeys(T, 0.0)
    gc.collect()
    for body in bodies:
        t0 = time.perf_counter()
        chunks = decode(body)
        t1 = time.perf_counter()
        for c in chunks:
            analyzer.analyze(c)
        t2 = time.perf_counter()
        reqs = [builder.build(c) for c in chunks]
        t3 = time.perf_counter()
        del reqs, chunks
        t4 = time.perf_counter()
        t["decode"] += t1 - t0; t["analyze"] += t2 - t1; t["request"] += t3 - t2; t["free"] += t4 - t3
    tot = sum(t.values())
    if best is None or tot < sum(best.values()):
        best = t
lines = n_msgs * per
print(kind, " ".join(f"{k}={v / lines * 1e6:.3f}us" for k, v in best.items()), f"total={sum(best.values()) / lines * 1e6:.3f}us/line")
