#!/bin/bash
# raw / json / raw+headers, base (main) and new alternated; kcat in every run
B=127.0.0.1:19731; LC=/work/wt/raw/.venv/bin/log-capturer; D=/work/wt/raw/docs/bench/encodings-2026-12-06
O=/tmp/raw-bench/series; mkdir -p $O
run() { # name base|new extra...
  local name=$1 who=$2; shift 2
  echo "$(date -u +%T) start $name load $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ $who = base ]; then
    PYTHONPATH=/work/wt/raw-base/src timeout 900 $LC bench --scenario max --files 4 --workers 1 --bootstrap $B --out-dir $O/out "$@" --json $O/$name.json > $O/$name.log 2>&1
  else
    timeout 900 $LC bench --scenario max --files 4 --workers 1 --bootstrap $B --out-dir $O/out "$@" --json $O/$name.json > $O/$name.log 2>&1
  fi
  echo "$(date -u +%T) end $name rc=$?"
}
for i in 1 2 3 4; do
  if [ $((i % 2)) = 1 ]; then a=base; b=new; else a=new; b=base; fi
  run $a-raw-max-$i $a --agent-config $D/raw.yaml
  run $b-raw-max-$i $b --agent-config $D/raw.yaml
  run $b-json-max-$i $b
  run $a-json-max-$i $a
  if [ $i -le 2 ]; then
    run $a-rawheaders-max-$i $a --agent-config $D/raw-headers.yaml
    run $b-rawheaders-max-$i $b --agent-config $D/raw-headers.yaml
  fi
done
echo done
