#!/usr/bin/env bash
# The alternated series of latency.md: peak 3 pairs, many-files 3 pairs, max 4 pairs.
# BEFORE: a copy of main's src (git archive; C modules built); AFTER: a copy of the branch's src.
# B: the broker (log-capturer kafka up --workdir /tmp/i20-lat-kafka --port 19420).
set -uo pipefail
B=${B:-127.0.0.1:19420}
BEFORE=${BEFORE:-/tmp/i20-lat-base/src}; AFTER=${AFTER:-/tmp/i20-lat-after/src}
peak() { log-capturer bench --scenario peak --files 4 --workers 1 --duration 30 --ceiling none --bootstrap "$B" --agent-src "$2"; }
mf() { log-capturer bench --scenario many-files --files 10000 --active 100 --rate 100 --duration 20 --watcher auto --bootstrap "$B" --json "latency-$1.json" --agent-src "$2"; }
max() { log-capturer bench --scenario max --files 4 --workers 1 --bootstrap "$B" --agent-src "$2"; }
peak peak-before-1 "$BEFORE"; peak peak-after-1 "$AFTER"; peak peak-after-2 "$AFTER"; peak peak-before-2 "$BEFORE"
peak peak-before-3 "$BEFORE"; peak peak-after-3 "$AFTER"
mf mf-before-1 "$BEFORE"; mf mf-after-1 "$AFTER"; mf mf-after-2 "$AFTER"; mf mf-before-2 "$BEFORE"
mf mf-before-3 "$BEFORE"; mf mf-after-3 "$AFTER"
max max-before-1 "$BEFORE"; max max-after-1 "$AFTER"; max max-after-2 "$AFTER"; max max-before-2 "$BEFORE"
max max-before-3 "$BEFORE"; max max-after-3 "$AFTER"; max max-after-4 "$AFTER"; max max-before-4 "$BEFORE"
# (each peak/max result.json copied as latency-<name>.json)
# Traced runs (the agent with latency-tracer-sitecustomize.py first on its PYTHONPATH):
#   I20_TRACE=<dir> PYTHONPATH=<dir with sitecustomize.py>:<src> log-capturer bench --scenario peak ...
#   (I20_LIGHT=1: only GC, pushes, poll rounds, positions writes; I20_SWITCH=0.001: sys.setswitchinterval)
