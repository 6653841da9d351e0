"""The benchmark harness: ``log-capturer bench``.

Runs the agent as a real process against a real Kafka broker, feeds it with
the load generator, reads the topics back with an independent consumer and
compares the result with a raw-librdkafka ceiling on the same file. See
BENCHMARKS.md for the results and how to read them.
"""

from log_capturer.devtools.bench.harness import SCENARIOS, BenchError, BenchOptions, Scenario, run_bench

__all__ = ["SCENARIOS", "BenchError", "BenchOptions", "Scenario", "run_bench"]
