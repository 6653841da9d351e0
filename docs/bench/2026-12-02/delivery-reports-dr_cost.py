"""What one delivery report per record costs in confluent-kafka, against a real local broker.

Produces N 130-byte keyed records (zstd, acks=all, idempotent, like the agent's producer) in
chunks of 1,000 and reports the process CPU per record for each way of asking for delivery
reports. Not a test: a measurement for BENCHMARKS.md ("Delivery reports").

    .venv/bin/log-capturer kafka up --workdir /tmp/wk-kafka --port 19792
    .venv/bin/python docs/bench/delivery-reports/dr_cost.py --bootstrap 127.0.0.1:19792 --rounds 3

Modes:
  per-record   on_delivery= a Python function, on every record (what the agent does)
  c-callback   on_delivery= a C builtin (dict.__setitem__), on every record
  same-thread  per-record, but poll() in the producing thread (no poll thread)
  last         a callback on the last record of each chunk only
  none         no callback at all
  batch        produce_batch() with a callback for every record
  batch-last   produce_batch() with a callback on the last record only
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from log_capturer.devtools.topics import TopicSpec, create_topics

MODES = ("per-record", "c-callback", "same-thread", "last", "none", "batch", "batch-last")
CHUNK = 1000
#: Every loop gives up after this long (a broker that stops acknowledging must not hang the run).
DEADLINE = 300.0


def run(mode: str, bootstrap: str, n: int, round_no: int) -> dict[str, Any]:
    topic = f"dr-cost-{mode}-{os.getpid()}-{round_no}"
    create_topics(bootstrap, topics=(TopicSpec(topic, 6, 1, "dr_cost"),))
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "compression.type": "zstd",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 100000,
            "message.timeout.ms": 0,
        }
    )
    values = [
        b'{"timestamp":"2026-12-02T18:00:00.%06dZ","level":"info","message":"GET /api/v1/items 200 '
        b'in 12ms user=42 trace=abcdef0123456789","seq":%d}' % (i, i)
        for i in range(CHUNK)
    ]
    keys = [f"src-{i % 4}" for i in range(CHUNK)]
    done = [0]
    reported = mode != "none"
    give_up = time.monotonic() + DEADLINE

    def per_record(err: Any, _msg: Any) -> None:
        if err is None:
            done[0] += 1

    def settle_chunk(err: Any, _msg: Any) -> None:
        if err is None:
            done[0] += CHUNK

    stop = threading.Event()

    def poller() -> None:
        while not stop.is_set() or len(p) or (reported and done[0] < n):
            if time.monotonic() > give_up:
                return
            p.poll(0.005)

    same = mode == "same-thread"
    thread = threading.Thread(target=poller)
    if not same:
        thread.start()
    produce = p.produce
    wall0, cpu0 = time.perf_counter(), time.process_time()
    sent = 0
    while sent < n:
        while len(p) > 60000:  # keep the queue from filling: no BufferError mid-chunk
            if time.monotonic() > give_up:
                raise SystemExit(f"{mode}: the broker stopped acknowledging ({len(p)} records waiting)")
            if same:
                p.poll(0.0005)
            else:
                time.sleep(0.0005)
        if mode in ("per-record", "same-thread"):
            for v, k in zip(values, keys, strict=True):
                produce(topic, v, k, on_delivery=per_record)
            if same:
                p.poll(0)
        elif mode == "c-callback":
            sink: dict[Any, Any] = {}
            cb: Callable[[Any, Any], None] = sink.__setitem__
            for v, k in zip(values, keys, strict=True):
                produce(topic, v, k, on_delivery=cb)
            done[0] += CHUNK
        elif mode == "last":
            for v, k in zip(values[:-1], keys[:-1], strict=True):
                produce(topic, v, k)
            produce(topic, values[-1], keys[-1], on_delivery=settle_chunk)
        elif mode == "none":
            for v, k in zip(values, keys, strict=True):
                produce(topic, v, k)
        elif mode == "batch":
            msgs: list[dict[str, Any]] = [{"value": v, "key": k} for v, k in zip(values, keys, strict=True)]
            assert p.produce_batch(topic, msgs, on_delivery=per_record) == CHUNK
        elif mode == "batch-last":
            msgs = [{"value": v, "key": k} for v, k in zip(values, keys, strict=True)]
            msgs[-1]["callback"] = settle_chunk
            assert p.produce_batch(topic, msgs) == CHUNK
        sent += CHUNK
    stop.set()
    if same:
        poller()
    else:
        thread.join()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    AdminClient({"bootstrap.servers": bootstrap}).delete_topics([topic])
    if reported:
        assert done[0] == n, (mode, done[0])
    return {"mode": mode, "records": n, "per_s": round(n / wall), "cpu_us": round(cpu / n * 1e6, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:19792")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args()
    for r in range(args.rounds):
        for mode in args.modes.split(","):
            res = run(mode, args.bootstrap, args.records, r)
            rate, cpu = res["per_s"], res["cpu_us"]
            print(f"round {r + 1} {mode:<12} {rate:>9,} records/s  {cpu:.2f} us CPU/record")


if __name__ == "__main__":
    main()
