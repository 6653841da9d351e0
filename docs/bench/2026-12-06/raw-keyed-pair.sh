#!/bin/bash
# usage: pair.sh TAG CONFIG ORDER(bn|nb) [extra bench args]; writes $TAG-base.json / $TAG-new.json
B=127.0.0.1:19741; LC=/work/wt/raw/.venv/bin/log-capturer
tag=$1; cfg=$2; order=$3; shift 3
run() {
  side=$1; shift
  src=(); [ $side = base ] && src=(--agent-src /work/wt/raw2-base/src)
  uptime >> $tag-$side.log
  $LC bench --scenario max --files 4 --workers 1 --bootstrap $B --agent-config $cfg --ceiling-keyed "${src[@]}" --json $tag-$side.json --out-dir /tmp/raw2/out "$@" >> $tag-$side.log 2>&1
}
if [ $order = bn ]; then run base "$@"; run new "$@"; else run new "$@"; run base "$@"; fi
