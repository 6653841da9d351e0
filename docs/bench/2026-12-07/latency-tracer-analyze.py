"""Summarise a trace-<pid>.json of sitecustomize.py: per-line stage percentiles and the tail."""

import json
import sys

import numpy as np


def pct(a, qs=(50, 90, 99, 99.9)):
    if len(a) == 0:
        return "-"
    return " / ".join(f"{v:.1f}" for v in np.percentile(a, qs))


d = json.load(open(sys.argv[1]))
done = d["done"]
t0 = min(e[0] for e in done) if done else 0
skip_s = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
# read, submit, take, send0, send1, n, emit_first, emit_last, seq_first, seq_last, source, settled
rows = [e for e in done if e[6] and e[0] - t0 >= skip_s * 1e9]
w = np.array([e[5] for e in rows], dtype=float)


def stage(a, b):
    return np.array([(e[b] - e[a]) / 1e6 for e in rows])


emit_read = np.array([(e[0] - e[6]) / 1e6 for e in rows])  # first line (oldest)
names = {
    "emit(first line) -> read": emit_read,
    "read -> submit": stage(0, 1),
    "submit -> take": stage(1, 2),
    "take -> send start": stage(2, 3),
    "send (produce_chunk)": stage(3, 4),
    "send end -> settled": stage(4, 11),
    "emit(first) -> settled": np.array([(e[11] - e[6]) / 1e6 for e in rows]),
}
print(f"chunks {len(rows)}, lines {int(w.sum())}, lines/chunk mean {w.mean():.1f}")
print("stage (per chunk, weighted by lines by repetition)  p50 / p90 / p99 / p99.9 ms")
rep = np.repeat(np.arange(len(rows)), w.astype(int))
for k, v in names.items():
    print(f"  {k:28s} {pct(v[rep])}")
# The tail: chunks whose emit->settled is above the p99
tot = names["emit(first) -> settled"]
thr = np.percentile(tot[rep], 99)
tail = [i for i in range(len(rows)) if tot[i] >= thr]
print(f"tail chunks (>= p99 {thr:.1f} ms): {len(tail)}; their mean stage ms:")
for k, v in names.items():
    print(f"  {k:28s} {np.mean(v[tail]):.1f}")
gcs = d["gc"]
if gcs:
    g = np.array([x[2] / 1e6 for x in gcs])
    by = {}
    for x in gcs:
        by.setdefault(x[1], []).append(x[2] / 1e6)
    print("gc:", {k: (len(v), round(max(v), 2), round(sum(v), 1)) for k, v in by.items()})
push = d["push"]
kinds = {}
for p in push:
    kinds[p[1]] = kinds.get(p[1], 0) + 1
print("pushes:", kinds, "rtt ms last", push[-1][5] if push else None)
if len(push) > 1:
    gaps = np.diff([p[0] for p in push]) / 1e6
    print("push gaps ms p50/p90/p99/max", pct(gaps, (50, 90, 99, 100)))
poll = d["poll"]
if poll:
    print("poll rounds with gap or duration > 8 ms:", len(poll), "max gap", max(p[1] for p in poll) / 1e6,
          "max dur", max(p[2] for p in poll) / 1e6)
turns = d["turns"]
if turns:
    td = np.array([t[1] / 1e6 for t in turns])
    print("read-loop turns:", len(turns), "duration p50/p99/max", pct(td, (50, 99, 100)))
    tg = np.diff([t[0] for t in turns]) / 1e6
    print("read-loop turn gaps p50/p99/max", pct(tg, (50, 99, 100)))
st = d.get("stats") or []
if st:
    print("librdkafka stats per 2 s window (us): int_latency p50/p99/max | outbuf p99 | rtt p50/p99/max | parse ms")
    for row in st:
        for name, b in row["brokers"].items():
            il, ob, rt = b["int_latency"], b["outbuf_latency"], b["rtt"]
            if not rt.get("cnt"):
                continue
            print(f"  {il['p50']}/{il['p99']}/{il['max']} | {ob['p99']} | {rt['p50']}/{rt['p99']}/{rt['max']} cnt {rt['cnt']} | {row.get('parse_ms', 0):.2f}+{row.get('orig_ms', 0):.2f}")
wp = d.get("wp") or []
if wp:
    a = np.array([x[1] / 1e6 for x in wp])
    print("write_positions on the read thread:", len(wp), "ms p50/p99/max", pct(a, (50, 99, 100)))
