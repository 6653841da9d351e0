#!/bin/bash
# usage: kbench-ab.sh TAG N ARGS... : alternates new (i19-kbench) and old (main's source) N times
tag=$1; n=$2; shift 2
out=/tmp/kbench-ab/$tag; mkdir -p $out
for i in $(seq 1 $n); do
  for which in new old; do
    [ $((i % 2)) = 0 ] && which=$([ $which = new ] && echo old || echo new)
    wt=/work/wt/kbench; [ $which = old ] && wt=/work/wt/kbench-base
    (cd $wt && uptime > $out/$which$i.uptime && timeout 900 .venv/bin/log-capturer bench --source kafka "$@" --out-dir /tmp/kbench-runs --json $out/$which$i.json > $out/$which$i.log 2>&1)
    echo "$which$i $(grep -o '"agent_lines_per_second": [0-9]*' $out/$which$i.json) $(grep -o '"ceiling_lines_per_second": [0-9]*' $out/$which$i.json) $(grep -o '"ratio": [0-9.]*' $out/$which$i.json) $(grep -o '"agent_cpu_us_per_line": [0-9.]*' $out/$which$i.json) lost=$(grep -o '"lost": [0-9]*' $out/$which$i.json) $(cat $out/$which$i.uptime | grep -o 'load.*')"
  done
done
