#!/bin/bash
# A = branch i24-inputs at 1b14c31 (/work/wt/inputs), B = main at 4b66e96 (/work/wt/inputs-base), alternated by farm-bench.
B=127.0.0.1:19741
OUT=/tmp/inputs-ab2
run() {  # name, n, bench args...
  local name=$1 n=$2; shift 2
  local args="$*"
  farm-bench -n $n --warmup 0 --timeout 2400 \
    --vs "sh -c 'cd /work/wt/inputs-base && exec .venv/bin/log-capturer bench --bootstrap $B --scenario max --duration 2 $args --out-dir /tmp/inputs-ab2/runs --json $OUT/$name-B-\$(date +%s%N).json >>$OUT/$name-B.log 2>&1'" \
    -- sh -c "cd /work/wt/inputs && exec .venv/bin/log-capturer bench --bootstrap $B --scenario max --duration 2 $args --out-dir /tmp/inputs-ab2/runs --json $OUT/$name-A-\$(date +%s%N).json >>$OUT/$name-A.log 2>&1" \
    > $OUT/farm-$name.txt 2>&1
  echo "$(date -u +%T) done $name"
}
run otlp 3 --source otlp
run fwd-fields 3 --source forward --http-batch 2000
run fwd-log 3 --source forward --http-batch 2000 --forward-record log
run http-msgpack 3 --source http --http-format msgpack --http-batch 2000
run http-ndjson 3 --source http --http-batch 2000
