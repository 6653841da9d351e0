import sys, time, timeit
from log_capturer.devtools.generate import LineFactory, ForwardTarget
from log_capturer.record import Origin
from log_capturer.sources.forward import protocol
from log_capturer.sources.forward.config import ForwardConfig
from log_capturer.sources.http.source import Records, EventTime
from log_capturer import _speedups
kind = sys.argv[1]
lf = LineFactory(); b = lf.batch(0, 2000, time.time_ns())
t = object.__new__(ForwardTarget); t.record = kind; t.batch_lines, t.tag, t.compress, t.messages = 2000, "loggen", False, 0
body = t._messages(b)[0][1]
records = Records(ForwardConfig(), "forward"); base = Origin("forward", "forward://127.0.0.1", {"tag": "loggen"})
vals, plain = _speedups.msgpack_values(body, EventTime)
msg = protocol.decode(vals[0], 1, 1 << 26, plain)
items = msg.items
cfg = records
def mv(): _speedups.msgpack_values(body, EventTime)
def dec(): protocol.decode(vals[0], 1, 1 << 26, plain)
def uc(): _speedups.uniform_columns(items, records._message_keys, records._level_keys, records._slow_keys, records._level_cache)
def lg(): _speedups.label_groups(items, 512)
def ch(): records.chunks(items, base)
for name, f in [("msgpack_values", mv), ("decode(events)", dec), ("uniform_columns", uc), ("label_groups", lg), ("Records.chunks", ch)]:
    n = 50
    best = min(timeit.repeat(f, number=n, repeat=5)) / n / 2000 * 1e6
    print(f"{kind} {name}: {best:.3f} us/record")
