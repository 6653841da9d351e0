#!/bin/bash
# A = branch i-fwdperf (/work/wt/fwdperf), B = main at 4c731ea (/work/wt/fwdperf-base), alternated by farm-bench.
B=127.0.0.1:19811
OUT=/tmp/fwdperf/ab
run() {  # name, n, bench args...
  local name=$1 n=$2; shift 2
  local args="$*"
  farm-bench -n $n --warmup 0 --timeout 1500 \
    --vs "sh -c 'cd /work/wt/fwdperf-base && exec .venv/bin/log-capturer bench --bootstrap $B --scenario max --duration 1 $args --json $OUT/$name-B-\$(date +%s%N).json >>$OUT/$name-B.log 2>&1'" \
    -- sh -c "cd /work/wt/fwdperf && exec .venv/bin/log-capturer bench --bootstrap $B --scenario max --duration 1 $args --json $OUT/$name-A-\$(date +%s%N).json >>$OUT/$name-A.log 2>&1" \
    > $OUT/farm-$name.txt 2>&1
  echo "$(date -u +%T) done $name"
}
run fwd-fields 3 --source forward --http-batch 2000
run fwd-log 3 --source forward --http-batch 2000 --forward-record log
run otlp 3 --source otlp
run http-msgpack 2 --source http --http-format msgpack --http-batch 2000
run http-ndjson 2 --source http --http-batch 2000
