"""Scratch latency tracer for the agent (issue 20, not part of the branch).

Loaded through PYTHONPATH when I20_TRACE (a directory) is set and the process is ``log_capturer
run``. Records wall-clock ns per chunk at: read (chunk.read_time_ns), submit_many, worker take,
sink send start/end, settle (delivery reports); pushes of adaptive batching; idle calls;
poll-round gaps; GC pauses; read-loop turns; inotify records. Written to
$I20_TRACE/trace-<pid>.json at exit and every 5 s.
"""

import os
import sys

_OUT = os.environ.get("I20_TRACE")
if os.environ.get("I20_SWITCH") and "run" in sys.argv:
    sys.setswitchinterval(float(os.environ["I20_SWITCH"]))
if _OUT and "run" in sys.argv and any(a.startswith("--config") for a in sys.argv):
    import atexit
    import gc
    import re
    import threading
    import time

    import orjson

    _now = time.time_ns
    _chunks: dict[int, list] = {}
    _done: list[list] = []
    _push: list[tuple] = []
    _idle: list[int] = []
    _gc: list[tuple] = []
    _poll: list[tuple] = []
    _turns: list[tuple] = []
    _ino: list[int] = []
    _lock = threading.Lock()
    _SEQ = re.compile(r'seq\\?"?[=:](\d+)')
    _TS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})Z")
    _MF = re.compile(r"mf-line f=(\d+) seq=(\d+) ns=(\d+)")
    import calendar

    _secs: dict[str, int] = {}

    def _emit_ns(line: str) -> int:
        m = _MF.search(line)
        if m:
            return int(m.group(3))
        m = _TS.search(line)
        if not m:
            return 0
        s = m.group(1)
        b = _secs.get(s)
        if b is None:
            b = _secs[s] = calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%S"))
        return b * 1_000_000_000 + int(m.group(2)) * 1000

    def _seq(line: str) -> int:
        m = _MF.search(line)
        if m:
            return int(m.group(1)) * 10_000_000 + int(m.group(2))
        m = _SEQ.search(line)
        return int(m.group(1)) if m else -1

    def _dump() -> None:
        with _lock:
            data = {
                "done": list(_done),
                "push": list(_push),
                "idle": list(_idle),
                "gc": list(_gc),
                "poll": list(_poll),
                "turns": list(_turns),
                "ino": list(_ino),
                "stats": list(_stats),
                "wp": list(_wp),
            }
        path = os.path.join(_OUT, f"trace-{os.getpid()}.json")
        with open(path + ".tmp", "wb") as f:
            f.write(orjson.dumps(data))
        os.replace(path + ".tmp", path)

    def _dumper() -> None:
        while True:
            time.sleep(5)
            try:
                _dump()
            except Exception:
                pass

    atexit.register(_dump)
    threading.Thread(target=_dumper, daemon=True, name="i20-dumper").start()

    # GC pauses.
    _gc_start = [0]

    def _gc_cb(phase: str, info: dict) -> None:
        if phase == "start":
            _gc_start[0] = time.perf_counter_ns()
        else:
            d = time.perf_counter_ns() - _gc_start[0]
            _gc.append((_now(), info.get("generation"), d, info.get("collected"), threading.current_thread().name))

    gc.callbacks.append(_gc_cb)

    _LIGHT = os.environ.get("I20_LIGHT") == "1"
    from log_capturer.pipeline import dispatcher as _disp
    from log_capturer.pipeline import queue as _q
    from log_capturer.sinks.kafka import batching as _b
    from log_capturer.sinks.kafka import service as _svc
    from log_capturer.sources.file import tailer as _tl
    from log_capturer.sources.file import watcher as _w

    _orig_submit_many = _disp.Dispatcher.submit_many

    def submit_many(self, chunks, timeout=None, checkpoints=None):
        t = _now()
        for c in chunks:
            if c.lines and id(c) not in _chunks:
                first, last = c.lines[0], c.lines[-1]
                _chunks[id(c)] = [
                    c.read_time_ns,
                    t,
                    0,
                    0,
                    0,
                    len(c.lines),
                    _emit_ns(first),
                    _emit_ns(last),
                    _seq(first),
                    _seq(last),
                    c.origin.source_id,
                    0,
                ]
        return _orig_submit_many(self, chunks, timeout, checkpoints)

    if not _LIGHT:
        _disp.Dispatcher.submit_many = submit_many

    _orig_take = _q.ChunkQueue.take

    def take(self, max_lines, max_wait, flush_on_idle):
        r = _orig_take(self, max_lines, max_wait, flush_on_idle)
        if r is not None:
            t = _now()
            for c in r[0]:
                e = _chunks.get(id(c))
                if e is not None:
                    e[2] = t
        return r

    if not _LIGHT:
        _q.ChunkQueue.take = take

    _orig_send = _svc.KafkaService.send

    def send(self, prepared, delivery):
        t = _now()
        e = _chunks.get(id(delivery.chunk))
        try:
            return _orig_send(self, prepared, delivery)
        finally:
            if e is not None:
                e[3] = t
                e[4] = _now()

    if not _LIGHT:
        _svc.KafkaService.send = send

    _orig_settle = _svc.KafkaService._settle_native

    def _settle_native(self, settled):
        t = _now()
        for item in settled:
            d = item[0]
            c = getattr(d, "chunk", None)
            if c is not None:
                e = _chunks.pop(id(c), None)
                if e is not None:
                    e[11] = t
                    _done.append(e)
        return _orig_settle(self, settled)

    if not _LIGHT:
        _svc.KafkaService._settle_native = _settle_native

    _orig_push = _b.LingerPolicy._push

    def _push_f(self, now, upto, handed):
        kind = "busy" if upto else ("repeat" if not self.acked and self.repeats else "idle")
        _push.append((_now(), kind, handed, self.idle_upto, self.pushed_upto, round(self.rtt * 1000, 2)))
        return _orig_push(self, now, upto, handed)

    _b.LingerPolicy._push = _push_f

    _orig_idle = _b.LingerPolicy.idle

    def idle(self, handed):
        _idle.append(_now())
        return _orig_idle(self, handed)

    if not _LIGHT:
        _b.LingerPolicy.idle = idle

    _orig_round = _svc.KafkaService._poll_round
    _last_round = [0]

    def _poll_round(self):
        t = time.perf_counter_ns()
        try:
            return _orig_round(self)
        finally:
            e = time.perf_counter_ns()
            gap = t - _last_round[0] if _last_round[0] else 0
            _last_round[0] = e
            if gap > 8_000_000 or e - t > 8_000_000:
                _poll.append((_now(), gap, e - t))

    _svc.KafkaService._poll_round = _poll_round

    _orig_pump_all = _tl.Tailer.pump_all

    def pump_all(self, now, work=None):
        t = _now()
        p = time.perf_counter_ns()
        try:
            return _orig_pump_all(self, now, work)
        finally:
            _turns.append((t, time.perf_counter_ns() - p, -1 if work is None else len(work)))

    if not _LIGHT:
        _tl.Tailer.pump_all = pump_all

    _wp: list = []
    _orig_wp = _tl.Tailer.write_positions

    def write_positions(self, now):
        t = _now()
        p = time.perf_counter_ns()
        try:
            return _orig_wp(self, now)
        finally:
            _wp.append((t, time.perf_counter_ns() - p))

    _tl.Tailer.write_positions = write_positions

    _orig_record = _w.InotifyWatcher.record

    def record(self, events):
        _ino.append(_now())
        return _orig_record(self, events)

    if not _LIGHT:
        _w.InotifyWatcher.record = record

    _stats: list = []
    _orig_stats = _svc.KafkaService._on_stats

    def _on_stats(self, raw):
        t0 = time.perf_counter_ns()
        try:
            j = orjson.loads(raw)
            row = {"t": _now(), "brokers": {}}
            for name, b in j.get("brokers", {}).items():
                if b.get("nodeid", -1) < 0:
                    continue
                row["brokers"][name] = {
                    k: {q: b.get(k, {}).get(q) for q in ("p50", "p99", "max", "cnt")}
                    for k in ("rtt", "int_latency", "outbuf_latency", "throttle")
                }
                row["brokers"][name]["tx"] = b.get("tx")
            row["parse_ms"] = (time.perf_counter_ns() - t0) / 1e6
            _stats.append(row)
        except Exception:
            pass
        t1 = time.perf_counter_ns()
        r = _orig_stats(self, raw)
        if _stats:
            _stats[-1]["orig_ms"] = (time.perf_counter_ns() - t1) / 1e6
        return r

    _svc.KafkaService._on_stats = _on_stats
