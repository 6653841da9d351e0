#!/bin/bash
# The scaling series of BENCHMARKS.md ("What more cores buy"), 2026-12-06 19:52-20:07 UTC: the four
# scripts run one after the other (series 1: pairs 1-3 and the profile; 2-4: pairs 4-5 and w2-6
# with the per-thread sampler, here docs/bench/2026-12-06/scaling-threads.py, then at
# /tmp/benchdoc-runs/threads.py). The broker: log-capturer kafka up --workdir /tmp/benchdoc-kafka
# --port 19892 (its pid, 24196, is the sampler's second argument). Results were copied from
# /tmp/benchdoc-runs/out to docs/bench/2026-12-06/ (scaling-threads-w1.json as scaling-threads-w1-4.json).
# Scaling series: --workers 1 and 2 alternated, 10 s of lines (3,000,000), 2 files.
cd /work/wt/benchdoc
B=127.0.0.1:19892
O=/tmp/benchdoc-runs/out
mkdir -p $O
for i in 1 2 3; do
  if [ $((i % 2)) = 1 ]; then order="1 2"; else order="2 1"; fi
  for w in $order; do
    echo "$(date -u +%T) start w$w-$i load $(cut -d' ' -f1-3 /proc/loadavg)"
    .venv/bin/log-capturer bench --scenario max --duration 10 --files 2 --workers $w --bootstrap $B \
      --out-dir /tmp/benchdoc-runs/runs --json $O/scaling-w$w-$i.json > $O/scaling-w$w-$i.log 2>&1
    echo "$(date -u +%T) end w$w-$i rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
echo "$(date -u +%T) start profile load $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/log-capturer bench --scenario max --duration 10 --files 2 --workers 1 --profile --ceiling none --bootstrap $B \
  --out-dir /tmp/benchdoc-runs/runs --json $O/scaling-profile-w1.json > $O/scaling-profile-w1.log 2>&1
echo "$(date -u +%T) end profile rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)"
#!/bin/bash
# Per-thread CPU: one more pair, workers 2 first, with /proc sampled by threads.py.
cd /work/wt/benchdoc
B=127.0.0.1:19892
O=/tmp/benchdoc-runs/out
for w in 2 1; do
  echo "$(date -u +%T) start w$w-4 load $(cut -d' ' -f1-3 /proc/loadavg)"
  python3 /tmp/benchdoc-runs/threads.py /tmp/benchdoc-runs/runs4 24196 $O/scaling-threads-w$w.json > /dev/null 2>&1 &
  S=$!
  .venv/bin/log-capturer bench --scenario max --duration 10 --files 2 --workers $w --bootstrap $B \
    --out-dir /tmp/benchdoc-runs/runs4 --json $O/scaling-w$w-4.json > $O/scaling-w$w-4.log 2>&1
  echo "$(date -u +%T) end w$w-4 rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)"
  wait $S
done
#!/bin/bash
# Per-thread CPU: one more pair, workers 2 first, with /proc sampled by threads.py.
cd /work/wt/benchdoc
B=127.0.0.1:19892
O=/tmp/benchdoc-runs/out
for w in 2 1; do
  echo "$(date -u +%T) start w$w-5 load $(cut -d' ' -f1-3 /proc/loadavg)"
  python3 /tmp/benchdoc-runs/threads.py /tmp/benchdoc-runs/runs5 24196 $O/scaling-threads-w$w-5.json > /dev/null 2>&1 &
  S=$!
  .venv/bin/log-capturer bench --scenario max --duration 10 --files 2 --workers $w --bootstrap $B \
    --out-dir /tmp/benchdoc-runs/runs5 --json $O/scaling-w$w-5.json > $O/scaling-w$w-5.log 2>&1
  echo "$(date -u +%T) end w$w-5 rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)"
  wait $S
done
#!/bin/bash
cd /work/wt/benchdoc
B=127.0.0.1:19892
O=/tmp/benchdoc-runs/out
w=2
echo "$(date -u +%T) start w$w-6 load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 /tmp/benchdoc-runs/threads.py /tmp/benchdoc-runs/runs6 24196 $O/scaling-threads-w$w-6.json > /dev/null 2>&1 &
S=$!
.venv/bin/log-capturer bench --scenario max --duration 10 --files 2 --workers $w --bootstrap $B \
  --out-dir /tmp/benchdoc-runs/runs6 --json $O/scaling-w$w-6.json > $O/scaling-w$w-6.log 2>&1
echo "$(date -u +%T) end w$w-6 rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)"
wait $S
