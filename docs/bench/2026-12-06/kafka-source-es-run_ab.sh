#!/bin/bash
# usage: run_ab.sh TAG N NEW_WORKTREE ARGS... : alternates new (a checkout of i19-kbench3) and old
# (main) N times, swapping the order every other pair
tag=$1; n=$2; newwt=$3; shift 3
out=/tmp/kbench3/ab/$tag; mkdir -p $out
for i in $(seq 1 $n); do
  for which in new old; do
    [ $((i % 2)) = 0 ] && which=$([ $which = new ] && echo old || echo new)
    wt=$newwt; [ $which = old ] && wt=/work/wt/kbench3-base
    (cd $wt && uptime > $out/$which$i.uptime && timeout 900 .venv/bin/log-capturer bench --source kafka "$@" --out-dir /tmp/kbench3/runs --json $out/$which$i.json > $out/$which$i.log 2>&1)
    echo "$which$i $(git -C $wt rev-parse --short HEAD) $(grep -o '"agent_lines_per_second": [0-9]*' $out/$which$i.json) $(grep -o '"ceiling_lines_per_second": [0-9]*' $out/$which$i.json) $(grep -o '"ratio": [0-9.]*' $out/$which$i.json) $(grep -o '"agent_cpu_us_per_line": [0-9.]*' $out/$which$i.json) lost=$(grep -o '"lost": [0-9]*' $out/$which$i.json) $(cat $out/$which$i.uptime | grep -o 'load.*')"
  done
done
