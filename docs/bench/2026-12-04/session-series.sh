#!/usr/bin/env bash
# The 2026-12-04 series: main at befcaa7 (the session's start; PYTHONPATH=/tmp/oldsrc/src, a
# worktree of that commit with its two C modules built in place) against this session's agent,
# alternated, on one local broker (log-capturer kafka up --workdir /tmp/wk-kafka --port 19792).
# level3.yaml: this session's agent with zstd at its default level (compression_level unset).
set -u
B=127.0.0.1:19792
O=${O:-/tmp/series}
LC=/work/main/.venv/bin/log-capturer
D=$(dirname "$0")
mkdir -p $O/runs
run() { # name, then bench arguments
  local name=$1; shift
  echo "$(date -u +%H:%M:%S) $name"
  "$@" --bootstrap $B --out-dir $O/runs --json $O/$name.json > $O/$name.log 2>&1
}
for i in 1 2 3; do
  PYTHONPATH=/tmp/oldsrc/src run old-max-$i $LC bench --scenario max --files 4 --workers 1
  run new-max-$i $LC bench --scenario max --files 4 --workers 1
  run new-level3-max-$i $LC bench --scenario max --files 4 --workers 1 --agent-config $D/level3.yaml
done
run new-max-30s $LC bench --scenario max --files 4 --workers 1 --duration 30
run new-max-w2 $LC bench --scenario max --files 4 --workers 2
run new-max-mixed $LC bench --scenario max --files 4 --workers 1 --format mixed
run new-peak $LC bench --scenario peak --files 4 --workers 1 --duration 60 --ceiling none
PYTHONPATH=/tmp/oldsrc/src run old-peak $LC bench --scenario peak --files 4 --workers 1 --duration 60 --ceiling none
run new-high $LC bench --scenario high --files 4 --workers 1 --duration 60 --ceiling none
run new-max-profile $LC bench --scenario max --files 4 --workers 1 --ceiling none --profile
echo "$(date -u +%H:%M:%S) done"
