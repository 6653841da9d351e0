"""Records.chunks of main (the module at 4c731ea, copied to /tmp/fwdperf/old_http_source.py with
git show) against this branch's, in one process, alternated; the objects alive frozen in both."""
import importlib.util, time, gc, struct, sys
from log_capturer.sources.http import source as new
from log_capturer.sources.http.config import HttpIngestConfig
spec = importlib.util.spec_from_file_location("old_http_source", "/tmp/fwdperf/old_http_source.py")
old = importlib.util.module_from_spec(spec); sys.modules["old_http_source"] = old; spec.loader.exec_module(old)
N = 2000
def items(shape):
    out = []
    for i in range(N):
        r = {"log": "x" * 150}
        if shape == "fields":
            r["level"] = ("info", "warn")[i % 2]; r["labels"] = {"tenant_id": f"t{i % 16}"}
        out.append((r, 1_764_000_000_000_000_000 + i))
    return out
cfg = HttpIngestConfig()
gc.collect(); gc.freeze()
for shape in ("fields", "log"):
    it = items(shape)
    acc = {"old": 0.0, "new": 0.0}
    for rnd in range(15):
        for name, mod in (("old", old), ("new", new)):
            rec = mod.Records(cfg)
            t = time.process_time()
            for _ in range(10): rec.chunks(it)
            acc[name] += time.process_time() - t
    print(shape, {k: round(v / 150 / N * 1e6, 3) for k, v in acc.items()}, "us/record")
