"""The local file sink: the delivery engine (:mod:`log_capturer.engine`) around
:class:`~.service.LocalFileService`.

Everything a sink shares (admission, backpressure, the breaker, acknowledgements, retries, the
local DLQ, replay, health, stats, metrics) is the engine's; this sink only writes files. Its parts:
``config`` (the ``sinks.local_file`` model), ``files`` (names, text lines, retention: no I/O),
``service`` (records, outcomes, replay), ``writer`` (the writer threads: appending, syncing,
rotation; the housekeeper: gzip, retention).
"""

from __future__ import annotations

import os
from pathlib import Path

from log_capturer.engine.runner import DeliveryPolicy, SinkRunner
from log_capturer.observability.metrics import Metrics
from log_capturer.reliability.dlq import DeadLetterStore
from log_capturer.sinks.base import SinkComponent, SinkContext
from log_capturer.sinks.local_file.config import LocalFileSinkConfig
from log_capturer.sinks.local_file.service import LocalFileService

#: The ``sink_name`` / ``sink_type`` label of its metrics.
SINK_TYPE = "local_file"
#: Its name in /health, /stats, component_health, logs and the ``failed_sink`` of DLQ entries.
SINK_NAME = "local_file_sink"


class LocalFileSink(SinkRunner):
    """``sinks.local_file``: records appended to files, acknowledged once synced as configured."""

    def __init__(
        self,
        config: LocalFileSinkConfig,
        metrics: Metrics,
        dlq: DeadLetterStore | None,
        key_field: str | None = None,
        name: str = SINK_NAME,
        worker: int = 0,
    ) -> None:
        self.config = config
        self.files = LocalFileService(config, key_field, name, worker)
        policy = DeliveryPolicy.of(
            config, park_on_timeout=dlq is not None and config.dlq_config.send_on_timeout
        )
        super().__init__(self.files, policy, metrics, dlq, name, SINK_TYPE)
        if policy.park_on_timeout:
            # A record the directory keeps refusing for ``timeout`` is parked (and acknowledged),
            # to be written by the DLQ's replay once it recovers.
            self.files.park_after = config.timeout


def build(config: LocalFileSinkConfig, ctx: SinkContext) -> LocalFileSink | None:
    if not config.enabled:
        return None
    from log_capturer.app import key_field_of  # the agent's choice of partition key field

    worker = ctx.worker[0] if ctx.worker is not None else 0
    return LocalFileSink(config, ctx.metrics, ctx.dlq, key_field_of(ctx.config), worker=worker)


def _problems(config: LocalFileSinkConfig) -> list[str]:
    """The directory must be one the agent can create or write."""
    p = Path(config.directory)
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        return [f"sinks.local_file.directory: {p} is not a directory; set it to a directory"]
    if not os.access(p, os.W_OK | os.X_OK):
        return [
            f"sinks.local_file.directory: {p} is not writable by this user; set it to a "
            "directory the agent may write, or change its permissions"
        ]
    return []


COMPONENT = SinkComponent(build=build, enabled=lambda config: config.enabled, problems=_problems)
