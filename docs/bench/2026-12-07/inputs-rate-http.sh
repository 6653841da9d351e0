#!/bin/bash
# HTTP ingest (msgpack, Fluent Bit's http output), main (base) and the branch's last step (new,
# /work/wt/i24-rate-after2) alternated, the same (new) client for both.
B=${B:-127.0.0.1:19773}
for n in ${PAIRS:-1 2}; do
  if [ $((n % 2)) -eq 1 ]; then order="base new"; else order="new base"; fi
  for code in $order; do
    src=/work/wt/i24-rate-base/src; [ $code = new ] && src=/work/wt/i24-rate-after2/src
    echo "$(date -u +%H:%M:%S) http $code $n load $(cut -d' ' -f1-3 /proc/loadavg)"
    .venv/bin/log-capturer bench --bootstrap $B --scenario max --duration 3 --source http --http-batch 2000 \
      --http-format msgpack --agent-src $src --json docs/bench/2026-12-07/inputs-rate-http-$code-$n.json \
      > /tmp/i24-runs/series-http-$code-$n.log 2>&1
    echo "  rc=$?"
  done
done
