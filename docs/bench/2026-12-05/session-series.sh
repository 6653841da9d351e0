#!/usr/bin/env bash
# The 2026-12-05 series: main at 714cfdd (the session's start; PYTHONPATH=/tmp/oldsrc2/src, a
# worktree of that commit with its two C modules built in place, its bench defaults: 30,000
# records in the producer) against this session's agent, alternated, on one local broker
# (log-capturer kafka up --workdir /tmp/wk-kafka --port 19792). Every max run measures the
# kcat ceiling on the same files right after the agent.
set -u
B=127.0.0.1:19792
O=${O:-/tmp/series}
LC=/work/main/.venv/bin/log-capturer
mkdir -p $O/runs
run() { # name, then bench arguments
  local name=$1; shift
  echo "$(date -u +%H:%M:%S) $name"
  "$@" --bootstrap $B --out-dir $O/runs --json $O/$name.json > $O/$name.log 2>&1
}
for i in 1 2 3; do
  PYTHONPATH=/tmp/oldsrc2/src run old-max-$i $LC bench --scenario max --files 4 --workers 1
  rm -rf $O/runs/max-*/logs  # the old harness keeps its generated files
  run new-max-$i $LC bench --scenario max --files 4 --workers 1
done
run new-max-30s $LC bench --scenario max --files 4 --workers 1 --duration 30
run new-max-w2 $LC bench --scenario max --files 4 --workers 2
run new-max-mixed $LC bench --scenario max --files 4 --workers 1 --format mixed
run new-peak $LC bench --scenario peak --files 4 --workers 1 --duration 60 --ceiling none
run new-high $LC bench --scenario high --files 4 --workers 1 --duration 60 --ceiling none
echo "$(date -u +%H:%M:%S) done"
# Run after the series (01:14 UTC), once the fresh-clone CI had finished:
# run new-max-profile $LC bench --scenario max --files 4 --workers 1 --ceiling none --profile
# for i in 4 5 6; do run new-max-$i $LC bench --scenario max --files 4 --workers 1; done
