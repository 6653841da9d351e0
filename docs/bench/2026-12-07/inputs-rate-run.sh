#!/bin/bash
# The inputs-rate series: main (base) and the branch (new) alternated, the same (new) client for
# both, 3 pairs per input. Run from the branch's worktree; BASE and NEW are checkouts with their
# C modules built; B is a local broker.
B=${B:-127.0.0.1:19773}
BASE=${BASE:-/work/wt/i24-rate-base/src}
NEW=${NEW:-/work/wt/i24-rate-after/src}
OUT=${OUT:-docs/bench/2026-12-07}
declare -A ARGS=(
  [log]="--source forward --http-batch 2000 --forward-record log"
  [fields]="--source forward --http-batch 2000"
  [otlp]="--source otlp"
)
for n in 1 2 3; do
  for input in log fields otlp; do
    if [ $((n % 2)) -eq 1 ]; then order="base new"; else order="new base"; fi
    for code in $order; do
      src=$BASE; [ $code = new ] && src=$NEW
      echo "$(date -u +%H:%M:%S) $input $code $n load $(cut -d' ' -f1-3 /proc/loadavg)"
      .venv/bin/log-capturer bench --bootstrap $B --scenario max --duration 3 ${ARGS[$input]} \
        --agent-src $src --json $OUT/inputs-rate-$input-$code-$n.json > /tmp/i24-runs/series-$input-$code-$n.log 2>&1
      echo "  rc=$?"
    done
  done
done
