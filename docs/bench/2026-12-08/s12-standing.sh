#!/bin/bash
# The standing of issue 20's rows on this machine, main as it is; 3 rounds, rows interleaved.
cd /work/main
B=127.0.0.1:19300
O=/tmp/ab/st
LC=.venv/bin/log-capturer
M8=docs/bench/2026-12-07/max8k.yaml
for i in 1 2 3; do
  $LC bench --scenario max --files 4 --workers 1 --bootstrap $B --out-dir /tmp/ab/runs --json $O/json-$i.json > $O/json-$i.log 2>&1
  $LC bench --scenario max --format mixed --lines 2000000 --bootstrap $B --out-dir /tmp/ab/runs --json $O/mixed-$i.json > $O/mixed-$i.log 2>&1
  $LC bench --scenario max --line-bytes 8192 --lines 40000 --bootstrap $B --out-dir /tmp/ab/runs --json $O/long8k-$i.json > $O/long8k-$i.log 2>&1
  $LC bench --scenario max --line-bytes 65536 --lines 6000 --bootstrap $B --out-dir /tmp/ab/runs --json $O/long64k-$i.json > $O/long64k-$i.log 2>&1
  $LC bench --scenario max --line-bytes 65536 --lines 15000 --ceiling none --agent-config $M8 --bootstrap $B --out-dir /tmp/ab/runs --json $O/trunc-$i.json > $O/trunc-$i.log 2>&1
  $LC bench --scenario max --line-bytes 8192 --lines 15000 --ceiling none --agent-config $M8 --bootstrap $B --out-dir /tmp/ab/runs --json $O/plain8k-$i.json > $O/plain8k-$i.log 2>&1
  $LC bench --scenario max --lines 600000 --keys 16 --ceiling none --bootstrap $B --out-dir /tmp/ab/runs --json $O/keys16-$i.json > $O/keys16-$i.log 2>&1
  $LC bench --scenario max --lines 600000 --keys 10000 --ceiling none --bootstrap $B --out-dir /tmp/ab/runs --json $O/keys10000-$i.json > $O/keys10000-$i.log 2>&1
  $LC bench --scenario peak --files 4 --workers 1 --duration 30 --ceiling none --bootstrap $B --out-dir /tmp/ab/runs --json $O/peak-$i.json > $O/peak-$i.log 2>&1
  $LC bench --scenario many-files --files 10000 --active 100 --rate 100 --duration 20 --watcher auto --bootstrap $B --out-dir /tmp/ab/runs --json $O/manyfiles-$i.json > $O/manyfiles-$i.log 2>&1
  echo "round $i done $(date -u +%H:%M:%S)"
done
