#!/usr/bin/env bash
# 64 KiB JSON lines cut at max_line_bytes 8192: the code before (main) and after (the cut JSON line
# decided in C) alternated, then whole 8 KiB lines with the after code for the same host's
# reference. B: the broker; BEFORE/AFTER: the two trees' src folders.
set -uo pipefail
B=${B:-127.0.0.1:19300}
here=$(cd "$(dirname "$0")" && pwd)
run() {  # name agent-src args...
  local name=$1 src=$2; shift 2
  out=$(log-capturer bench "$@" --agent-src "$src" --bootstrap "$B" 2>&1 | grep -o 'bench: result: [^ ]*' | cut -d' ' -f3)
  [ -n "$out" ] && cp "$out" "$here/${PREFIX:-trunc-cut}-$name.json"
  echo "$(date -u +%H:%M:%S) $name ${out:-FAILED}"
}
T="--scenario max --line-bytes 65536 --lines 15000 --ceiling none --agent-config $here/max8k.yaml"
P="--scenario max --line-bytes 8192 --lines 15000 --ceiling none --agent-config $here/max8k.yaml"
for i in 1 2 3; do
  # shellcheck disable=SC2086
  run "before-$i" "$BEFORE" $T
  # shellcheck disable=SC2086
  run "after-$i" "$AFTER" $T
done
for i in 1 2; do
  # shellcheck disable=SC2086
  run "plain8k-after-$i" "$AFTER" $P
done
