"""The dispatcher alone: 400 forward-like messages of 16 chunks of 125 lines, submitted chunk by
chunk (Dispatcher.submit) or together (Dispatcher.submit_many), to a sink that acknowledges at
once; prints process CPU per line (us) and the sink calls. Run from the repository root."""
import sys, time, threading
sys.path.insert(0, "tests/unit/pipeline")
from test_dispatcher import GateSink, dispatcher
from log_capturer.record import Chunk, Origin
def run(many: bool, msgs=400):
    sink = GateSink()
    d = dispatcher(sink, worker_count=2)
    origins = [Origin("forward", "forward://127.0.0.1", {"tenant_id": f"t{i}"}) for i in range(16)]
    t0 = time.process_time(); w0 = time.perf_counter()
    for m in range(msgs):
        chunks = [Chunk(o, ["x"] * 125) for o in origins]
        if many:
            d.submit_many(chunks, 1)
        else:
            for c in chunks: d.submit(c, None, 1)
    d.close(10)
    return (time.process_time() - t0) / (msgs * 2000) * 1e6, sink.calls
for _ in range(3):
    print("per-chunk", run(False), "many", run(True))
