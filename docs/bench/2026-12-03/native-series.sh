#!/usr/bin/env bash
# The native-hot-path series: main at 8e463dd (PYTHONPATH=/tmp/oldsrc/src) against a2800bc, alternated.
set -u
B=127.0.0.1:19792
O=/tmp/ns
LC=/work/main/.venv/bin/log-capturer
for i in 1 2 3; do
  PYTHONPATH=/tmp/oldsrc/src $LC bench --scenario max --files 4 --workers 1 --bootstrap $B --out-dir $O/runs --json $O/old-w1-$i.json > $O/old-w1-$i.log 2>&1
  $LC bench --scenario max --files 4 --workers 1 --bootstrap $B --out-dir $O/runs --json $O/new-w1-$i.json > $O/new-w1-$i.log 2>&1
done
$LC bench --scenario max --files 4 --workers 2 --bootstrap $B --out-dir $O/runs --json $O/new-w2-1.json > $O/new-w2-1.log 2>&1
$LC bench --scenario max --files 4 --workers 1 --duration 30 --bootstrap $B --out-dir $O/runs --json $O/new-w1-30s.json > $O/new-w1-30s.log 2>&1
$LC bench --scenario peak --files 4 --workers 1 --duration 60 --ceiling none --bootstrap $B --out-dir $O/runs --json $O/new-peak-w1.json > $O/new-peak-w1.log 2>&1
echo done
