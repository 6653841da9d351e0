#!/bin/bash
# Issue 24, inputs with per-record fields: base (main 24ad8ab, git archive) and after (branch
# i24-fields), alternated pair by pair (base first in pairs 1 and 3, after first in pair 2).
set -u
B=127.0.0.1:19410
OUT=/work/wt/i24-fields/docs/bench/2026-12-07
declare -A ARGS=(
  [otlp]="--source otlp"
  [fwdfields]="--source forward --http-batch 2000"
  [fwdlog]="--source forward --http-batch 2000 --forward-record log"
  [msgpack]="--source http --http-batch 2000 --http-format msgpack"
)
INPUTS=${INPUTS:-otlp fwdfields fwdlog}
declare -A SRC=([base]=/tmp/i24-fields-base/src [after]=/work/wt/i24-fields/src)
cd /work/wt/i24-fields
for pair in 1 2 3; do
  if [ $pair = 2 ]; then order="after base"; else order="base after"; fi
  for input in $INPUTS; do
    for code in $order; do
      echo "== $(date -u +%T) pair $pair $input $code load $(cut -d' ' -f1 /proc/loadavg)"
      /work/main/.venv/bin/log-capturer bench --bootstrap $B --scenario max --duration 3 ${ARGS[$input]} \
        --agent-src ${SRC[$code]} --json $OUT/inputs-fields-$input-$code-$pair.json > /tmp/i24-fields-prof/series-$input-$code-$pair.log 2>&1
      echo "rc $?"
    done
  done
done
