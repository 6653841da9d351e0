#!/bin/bash
source <(sed -n '/^B=/,/^}/p' /tmp/fwdperf/ab/run_agent_ab.sh)
run http2-msgpack 3 --source http --http-format msgpack --http-batch 2000
run fwd-gzip 2 --source forward --http-batch 2000 --forward-compress
run otlp2 2 --source otlp --http-batch 5000
