#!/bin/bash
while [ ! -f /tmp/raw2/s2.done ]; do sleep 2; done
B=127.0.0.1:19741; LC=/work/wt/raw/.venv/bin/log-capturer
for x in base-2 new-2 new-3 base-3; do
  side=${x%-*}; src=(); [ $side = base ] && src=(--agent-src /work/wt/raw2-base/src)
  uptime >> peak-$x.log
  $LC bench --scenario peak --duration 30 --files 4 --workers 1 --bootstrap $B --agent-config raw.yaml "${src[@]}" --json peak-$x.json --out-dir /tmp/raw2/out >> peak-$x.log 2>&1
done
echo done > peak2.done
