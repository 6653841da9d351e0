#!/usr/bin/env bash
# Codec raw against kcat on a quiet host: the standing command, raw and json alternated,
# PAIRS pairs, each result copied beside this script. B: the broker (log-capturer kafka up).
set -euo pipefail
B=${B:-127.0.0.1:19300}
PAIRS=${PAIRS:-6}
here=$(cd "$(dirname "$0")" && pwd)
for i in $(seq 1 "$PAIRS"); do
  for codec in raw json; do
    extra=()
    [ "$codec" = raw ] && extra=(--agent-config docs/bench/2026-12-06/encodings-raw.yaml)
    out=$(log-capturer bench --scenario max --files 4 --workers 1 "${extra[@]}" --bootstrap "$B" 2>&1 \
      | grep -o 'bench: result: [^ ]*' | cut -d' ' -f3)
    cp "$out" "$here/raw-quiet-$codec-$i.json"
    echo "$codec $i $out"
  done
done
