"""The chunk producer: librdkafka with delivery reports counted in C (``_rdk.c``, typed by
``_rdk.pyi``); this module loads it.

confluent-kafka costs about 1.5-2 us of CPU per delivery report (a Python ``Message``, the GIL
taken again): a quarter of the agent's time at full speed. :class:`ChunkProducer` keeps one
delivery report per record, so the checkpoint still waits for every record's own
acknowledgement, but counts them in C and gives each chunk back once, with the records that
failed (copied, with their error). It runs on the same librdkafka as confluent-kafka: the copy
bundled in its wheel, or the system's for a source build.

The Kafka sink sends its chunks through it (``sinks.kafka.native_producer``, on by default);
everything else (retries, the DLQ topic, replays, metadata) still goes through confluent-kafka.
"""

from __future__ import annotations

import ctypes.util
import glob
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import confluent_kafka
from confluent_kafka import KafkaError

if TYPE_CHECKING:
    from log_capturer.sinks.kafka.native import _rdk

#: A failed record: (error code, topic, value, key, partition, headers), the objects it was
#: produced from.
Failure = tuple[int, str, bytes, str | bytes | None, int, list[tuple[str, str | bytes | None]] | None]
#: A settled chunk: (token, records produced, failures).
Settled = tuple[Any, int, list[Failure]]

# librdkafka's syslog levels -> logging levels
_LEVELS = {0: 50, 1: 50, 2: 50, 3: 40, 4: 30, 5: 20, 6: 20, 7: 10}


class NativeUnavailable(RuntimeError):
    """The compiled module or librdkafka cannot be loaded; the message says why."""


def librdkafka_path() -> str:
    """The librdkafka shared library confluent-kafka uses: its wheel's copy, else the system's."""
    pkg = os.path.dirname(confluent_kafka.__file__)
    bundled = sorted(glob.glob(os.path.join(os.path.dirname(pkg), "confluent_kafka.libs", "librdkafka*.so*")))
    if bundled:
        return bundled[0]
    found = ctypes.util.find_library("rdkafka")
    if found:
        return found
    raise NativeUnavailable(
        "librdkafka not found: neither confluent-kafka's wheel (confluent_kafka.libs) nor the system has it"
    )


_loaded: str | None = None


def load() -> str:
    """Load the compiled module and librdkafka once; returns librdkafka's version."""
    global _loaded
    try:
        from log_capturer.sinks.kafka.native import _rdk
    except ImportError as exc:  # pragma: no cover - a broken install
        raise NativeUnavailable(
            f"the compiled module log_capturer.sinks.kafka.native._rdk is missing ({exc}); reinstall the "
            "agent with a C compiler present (pip install -e .), or set sinks.kafka.native_producer: false"
        ) from exc
    if _loaded is None:
        try:
            _loaded = str(_rdk.load(librdkafka_path()))
        except ImportError as exc:
            raise NativeUnavailable(str(exc)) from exc
    return _loaded


def _conf_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class ChunkProducer:
    """librdkafka producer for chunks of records. Thread use as in the Kafka sink: any thread may
    call :meth:`produce_chunk`; one thread calls :meth:`poll` / :meth:`flush` (callbacks run there)."""

    def __init__(
        self,
        conf: dict[str, Any],
        error_cb: Callable[[KafkaError], None] | None = None,
        stats_cb: Callable[[str], None] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        load()
        from log_capturer.sinks.kafka.native import _rdk

        self._error_cb = error_cb
        self._logger = logger
        plain = {k: _conf_value(v) for k, v in conf.items() if not callable(v) and k != "logger"}
        self._name = str(conf.get("client.id", "rdkafka"))
        try:
            self._p: _rdk.Producer = _rdk.Producer(
                plain,
                self._on_error if error_cb is not None else None,
                stats_cb,
                self._on_log if logger is not None else None,
            )
        except ValueError as exc:
            raise confluent_kafka.KafkaException(KafkaError(KafkaError._INVALID_ARG, str(exc))) from exc
        self.produce_chunk = self._p.produce_chunk
        self.poll = self._p.poll
        self.flush = self._p.flush
        self.wake = self._p.wake
        self.purge = self._p.purge

    def _on_error(self, code: int, reason: str, fatal: int) -> None:
        assert self._error_cb is not None
        self._error_cb(KafkaError(code, reason, fatal=bool(fatal)))

    def _on_log(self, level: int, fac: str, msg: str) -> None:
        assert self._logger is not None
        self._logger.log(_LEVELS.get(level, 20), "%s [%s] %s", fac, self._name, msg)

    @property
    def live_chunks(self) -> int:
        """Chunks handed to librdkafka and not yet given back by poll()/flush()."""
        return self._p.live_chunks

    @property
    def records(self) -> int:
        """Records librdkafka holds, queued or in flight (``len()`` also counts the events
        waiting for poll(), such as connection errors)."""
        return self._p.records

    @property
    def deferred(self) -> int:
        """Times settled chunks were kept for a later poll() because no memory was left."""
        return self._p.deferred

    def __len__(self) -> int:
        return len(self._p)

    def close(self) -> None:
        """Purge what is held and end librdkafka's threads now (see ``close_producer``)."""
        self._p.close()

    # -- transactions: as confluent-kafka's Producer, a failure raises KafkaException ----------
    def _transaction(self, op: int, timeout: float) -> None:
        err = self._p.transaction(op, timeout)
        if err is not None:
            code, reason, fatal, retriable, abort = err
            raise confluent_kafka.KafkaException(
                KafkaError(code, reason, fatal=fatal, retriable=retriable, txn_requires_abort=abort)
            )

    def init_transactions(self, timeout: float) -> None:
        self._transaction(0, timeout)

    def begin_transaction(self) -> None:
        self._transaction(1, 0)

    def commit_transaction(self, timeout: float) -> None:
        self._transaction(2, timeout)

    def abort_transaction(self, timeout: float) -> None:
        self._transaction(3, timeout)
