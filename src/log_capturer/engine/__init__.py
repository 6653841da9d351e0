"""The delivery engine: what every sink gets, written once.

A sink is split in two. Its *service* (``sinks/<name>/service.py``) knows its server: it turns a
chunk into records (:meth:`Service.prepare`), hands them to its client (:meth:`Service.send`),
sends one again (:meth:`Service.resend`), and reports each record's outcome: delivered, or a
:class:`~.contract.Failure` (retriable, timed out, retry alone, rejected) with the error. The
:class:`~.runner.SinkRunner` around it owns everything else, the same way for every sink:

- admission: the three backpressure levels and the circuit breaker, checked before a chunk is
  encoded, so that the sources wait instead of the memory growing;
- acknowledgement accounting: a chunk is acknowledged once each of its records was delivered or
  durably parked (:class:`~.runner.Delivery`), which moves the source's checkpoint;
- retries with back-off, parking what times out (``dlq_config.send_on_timeout``), overflow of a
  stalled sink;
- the dead-letter path, Benthos style: a record refused for good goes to the service's dead-letter
  output if it has one (Kafka's DLQ topic), and to the local store (:mod:`.parking`) if not, or if
  that fails too;
- replay of the local store's entries, and the metrics and health of all of the above.

Threads: dispatcher threads call :meth:`SinkRunner.send` (admission, encoding, hand-over); the
service's own thread calls :meth:`SinkRunner.tick` every round and reports outcomes from it, so
the runner's bookkeeping after a hand-over happens on that one thread and needs no locks.
"""
