"""Multi-process mode (``app.workers`` > 1): a supervisor and N worker processes.

One Python process ships up to about 800,000 lines/s on two quiet cores, with the
GIL held by its dispatch threads for much of that; more cores can take more
processes (BENCHMARKS.md, "What more cores buy"). With ``app.workers: N`` (or
``log-capturer run --workers N``) a supervisor starts N workers, each a whole
agent (its own sources, dispatcher and Kafka producer), and the sources are
split between them:

- files and containers by a hash of their ``source_id`` modulo N (:mod:`.shard`): one file
  and its rotations stay in one worker, so their order and their
  acknowledgement-driven checkpoints are those of a single process;
- syslog, forward, HTTP ingest and DLQ reprocessing run in worker 0.

Modules: :mod:`.shard` (who follows which file), :mod:`.positions` (positions
files per worker, laid out again when N changes; the directory lock),
:mod:`.worker` (one worker process), :mod:`.supervisor` (start, restart,
drain), :mod:`.api` and :mod:`.aggregate` (the agent's HTTP ports, answered
from the workers').
"""
