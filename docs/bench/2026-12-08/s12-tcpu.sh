#!/bin/bash
# usage: tcpu.sh OUT LINES [bench args...]: runs a mixed max bench, prints per-thread-kind CPU us/line
P=$1; L=$2; shift 2
cd /work/main
( ${BENCH:-.venv/bin/log-capturer} bench --scenario max --format ${FMT:-mixed} --lines $L --bootstrap 127.0.0.1:19300 --out-dir /tmp/ab/runs --json $P.json "$@" > $P.log 2>&1 ) &
bp=$!
pid=
for i in $(seq 1 600); do pid=$(pgrep -f "log_capturer run --config" | head -1); [ -n "$pid" ] && break; sleep 0.1; done
: > $P.ticks
jp=$(pgrep -f 'java.*lead-kafka' | head -1); j0=$(awk '{print $14+$15}' /proc/$jp/stat)
while kill -0 $pid 2>/dev/null; do
  s=$(for t in /proc/$pid/task/*; do echo "$(basename $t)|$(cat $t/comm 2>/dev/null | tr ' ' _)|$(awk '{print $14+$15}' $t/stat 2>/dev/null)|$(awk '/ctxt/{s+=$2} END{print s}' $t/status 2>/dev/null)"; done)
  [ -n "$s" ] && echo "$s" > $P.ticks.tmp && mv $P.ticks.tmp $P.ticks
  sleep 0.3
done
j1=$(awk '{print $14+$15}' /proc/$jp/stat); echo $((j1-j0)) > $P.java
wait $bp
python3 - $P $L <<'PY'
import sys, json
p, L = sys.argv[1], int(sys.argv[2])
tot = {}; ctx = {}
for l in open(p + '.ticks'):
    tid, comm, t, cs = l.strip().split('|')
    ctx[comm if comm.startswith('rdk') else 'py-'+tid] = ctx.get(comm if comm.startswith('rdk') else 'py-'+tid, 0) + int(cs or 0)
    if not t: continue
    kind = 'broker' if comm.startswith('rdk:broker') else ('rdk-other' if comm.startswith('rdk') else 'py-' + tid)
    tot[kind] = tot.get(kind, 0) + int(t)
d = json.load(open(p + '.json')); r = d['results']
java = int(open(p + '.java').read())
top = sorted(tot.items(), key=lambda kv: -kv[1])[:5]
print(p.split('/')[-1], f"java={java*1e4/L:.2f}", int(r['throughput']), r['cpu_us_per_line'], round(d['ratio_to_ceiling'], 3), int(d['ceiling']['throughput']),
      ' '.join(f"{k}={v*1e4/L:.2f}/{ctx.get(k, 0)}cs" for k, v in top))
PY
