"""Records per stored batch of the routed topics of `log-capturer bench` results.

Reads the batches back from the broker's own log segments (kafka.tools.DumpLogSegments,
via LocalKafka.stored_batches), so it must run on the machine of the broker the bench used:

    .venv/bin/python scripts/batch-stats.py CLUSTER_WORKDIR RESULT.json [RESULT.json ...]

Prints one JSON line per result: throughput, latency, CPU per line, load, and the batch count,
mean / median / largest records per batch (the DLQ and ceiling topics left out).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from log_capturer.devtools.kafka_local import LocalKafka


def main(workdir: str, results: list[str]) -> None:
    kafka = LocalKafka(Path(workdir))
    for path in results:
        result = json.loads(Path(path).read_text())
        counts = [
            b.count
            for name, topic in result["topics"].items()
            if name not in ("ceiling", "logs-dlq")
            for b in kafka.stored_batches(topic)
        ]
        r = result["results"]
        summary = {
            "result": Path(path).name,
            "throughput": r["throughput"],
            "latency_consume_ms": r["latency_ms"]["consume"],
            "cpu_us_per_line": r["cpu_us_per_line"],
            "load": result["load"],
            "batches": len(counts),
            "records_per_batch_mean": round(sum(counts) / len(counts), 1) if counts else None,
            "records_per_batch_median": statistics.median(counts) if counts else None,
            "records_per_batch_max": max(counts, default=None),
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
