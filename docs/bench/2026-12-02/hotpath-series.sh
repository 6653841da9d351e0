#!/usr/bin/env bash
# The series of BENCHMARKS.md "Hot path and queue sizes" (2026-12-02): one process and two
# workers, alternated, on the broker of `log-capturer kafka up --workdir /tmp/wk-kafka --port 19792`.
set -euo pipefail
B=${B:-127.0.0.1:19792}
OUT=${OUT:-docs/bench/hotpath}
run() { log-capturer bench --bootstrap "$B" --out-dir /tmp/bench-runs "$@"; }
for i in 1 2 3; do
  run --scenario max --files 4 --workers 1 --json "$OUT/max-w1-$i.json"
  run --scenario max --files 4 --workers 2 --json "$OUT/max-w2-$i.json"
done
run --scenario max --files 4 --workers 1 --duration 30 --json "$OUT/max-w1-30s.json"
run --scenario max --files 4 --workers 2 --duration 30 --json "$OUT/max-w2-30s.json"
run --scenario max --files 4 --workers 1 --format mixed --json "$OUT/max-w1-mixed.json"
run --scenario peak --files 4 --workers 1 --duration 60 --ceiling none --json "$OUT/peak-w1.json"
run --scenario peak --files 4 --workers 2 --duration 60 --ceiling none --json "$OUT/peak-w2.json"
