#!/bin/bash
# The client before this series (one OTLP request at a time, 4 forward messages in flight, Python
# encoding during the run) against main's agent: main's own bench, run from its checkout.
B=${B:-127.0.0.1:19773}
OUT=${OUT:-/work/wt/i24-rate/docs/bench/2026-12-07}
cd /work/wt/i24-rate-base
for input in log fields otlp; do
  case $input in
    log) args="--source forward --http-batch 2000 --forward-record log" ;;
    fields) args="--source forward --http-batch 2000" ;;
    otlp) args="--source otlp" ;;
  esac
  echo "$(date -u +%H:%M:%S) $input oldclient load $(cut -d' ' -f1-3 /proc/loadavg)"
  PYTHONPATH=src /work/wt/i24-rate/.venv/bin/python -m log_capturer bench --bootstrap $B --scenario max \
    --duration 3 $args --out-dir /tmp/i24-runs/oldclient --json $OUT/inputs-rate-$input-oldclient-1.json \
    > /tmp/i24-runs/oldclient-$input.log 2>&1
  echo "  rc=$?"
done
