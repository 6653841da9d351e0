#!/bin/bash
# Rows whose round-2 runs overlapped a unit-test run (02:31-02:33): once more, after round 3.
while pgrep -f /tmp/ab/st/run.sh > /dev/null; do sleep 5; done
cd /work/main
B=127.0.0.1:19300
O=/tmp/ab/st
LC=.venv/bin/log-capturer
M8=docs/bench/2026-12-07/max8k.yaml
i=4
$LC bench --scenario max --line-bytes 65536 --lines 15000 --ceiling none --agent-config $M8 --bootstrap $B --out-dir /tmp/ab/runs --json $O/trunc-$i.json > $O/trunc-$i.log 2>&1
$LC bench --scenario max --line-bytes 8192 --lines 15000 --ceiling none --agent-config $M8 --bootstrap $B --out-dir /tmp/ab/runs --json $O/plain8k-$i.json > $O/plain8k-$i.log 2>&1
$LC bench --scenario max --lines 600000 --keys 16 --ceiling none --bootstrap $B --out-dir /tmp/ab/runs --json $O/keys16-$i.json > $O/keys16-$i.log 2>&1
$LC bench --scenario max --lines 600000 --keys 10000 --ceiling none --bootstrap $B --out-dir /tmp/ab/runs --json $O/keys10000-$i.json > $O/keys10000-$i.log 2>&1
echo "round 4 done $(date -u +%H:%M:%S)"
