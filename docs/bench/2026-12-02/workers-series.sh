#!/bin/bash
# The measurement series for BENCHMARKS.md (multi-process mode). Broker: 127.0.0.1:19792.
cd /work/wt-workers
B=127.0.0.1:19792; O=/tmp/wk-bench/final2; R=/tmp/wk-bench/final2-runs
run() { # name, args...
  local name=$1; shift
  echo "== $(date -u +%FT%TZ) $name load=$(cut -d' ' -f1-3 /proc/loadavg)"
  .venv/bin/log-capturer bench --bootstrap $B --out-dir $R --json $O/$name.json "$@" 2>&1 \
    | grep -E "throughput  |latency|RSS peak|ceiling  |load average" | head -6
}
for i in 1 2 3 4; do
  run max-w1-f4-$i --scenario max --files 4 --workers 1
  run max-w2-f4-$i --scenario max --files 4 --workers 2
done
run max-w1-f1 --scenario max --files 1 --workers 1
run max-w2-f4-30s --scenario max --files 4 --workers 2 --duration 30
run max-w1-f4-30s --scenario max --files 4 --workers 1 --duration 30
run max-w2-f4-profile --scenario max --files 4 --workers 2 --profile --ceiling none
run peak-w1-f4 --scenario peak --files 4 --workers 1 --duration 60 --ceiling none
run peak-w2-f4 --scenario peak --files 4 --workers 2 --duration 60 --ceiling none
run peak-tuned-w2-f4 --scenario peak --files 4 --workers 2 --duration 60 --ceiling none --agent-config docs/bench/tuning-latency.yaml
echo "== done $(date -u +%FT%TZ)"
