#!/usr/bin/env bash
# The open targets of issues 20 and 24 on a quiet host: each row's standing command (BENCHMARKS.md),
# ROUNDS rounds, the scenarios in turn within a round; each result copied beside this script as
# $PREFIX-<name>-<round>.json (PREFIX: quiet). B: the broker (log-capturer kafka up).
set -uo pipefail
B=${B:-127.0.0.1:19300}
ROUNDS=${ROUNDS:-3}
here=$(cd "$(dirname "$0")" && pwd)
declare -A S=(
  [mixed]="--scenario max --format mixed --lines 2000000"
  [manyfiles]="--scenario many-files --files 10000 --active 100 --rate 100 --duration 20 --watcher auto"
  [peak]="--scenario peak --files 4 --workers 1 --duration 30 --ceiling none"
  [fwdlog]="--scenario max --duration 3 --source forward --http-batch 2000 --forward-record log"
  [fwdfields]="--scenario max --duration 3 --source forward --http-batch 2000"
  [otlp]="--scenario max --duration 3 --source otlp"
  [msgpack]="--scenario max --duration 3 --source http --http-batch 2000 --http-format msgpack"
  [long8k]="--scenario max --line-bytes 8192 --lines 40000"
  [long64k]="--scenario max --line-bytes 65536 --lines 6000"
  [trunc64k]="--scenario max --line-bytes 65536 --lines 15000 --ceiling none --agent-config $here/max8k.yaml"
  [plain8k]="--scenario max --line-bytes 8192 --lines 15000 --ceiling none --agent-config $here/max8k.yaml"
  [keys16]="--scenario max --lines 600000 --keys 16 --ceiling none"
  [keys10000]="--scenario max --lines 600000 --keys 10000 --ceiling none"
)
ORDER=${ORDER:-"mixed manyfiles peak fwdlog fwdfields otlp msgpack long8k long64k trunc64k plain8k keys16 keys10000"}
PREFIX=${PREFIX:-quiet}
for r in $(seq 1 "$ROUNDS"); do
  for name in $ORDER; do
    dest="$here/$PREFIX-$name-$r.json"
    if [ "$name" = manyfiles ]; then
      # many-files prints its result (no result.json): --json writes it
      # shellcheck disable=SC2086
      log-capturer bench ${S[$name]} --bootstrap "$B" --json "$dest" > /dev/null 2>&1
      out=$([ -s "$dest" ] && echo "$dest")
    else
      # shellcheck disable=SC2086
      out=$(log-capturer bench ${S[$name]} --bootstrap "$B" 2>&1 | grep -o 'bench: result: [^ ]*' | cut -d' ' -f3)
      if [ -n "$out" ]; then cp "$out" "$dest"; fi
    fi
    echo "$(date -u +%H:%M:%S) $name $r ${out:-FAILED}"
  done
done
