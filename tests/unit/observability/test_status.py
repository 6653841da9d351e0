"""The live status line of ``log-capturer run``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from rich.console import Console

from log_capturer.observability.status import StatusLine


def line() -> StatusLine:
    # Only what render reads of the agent: the queue's utilization and the sinks' health.
    agent = SimpleNamespace(
        dispatcher=SimpleNamespace(queue=SimpleNamespace(utilization=0.5)), sink_health=lambda: []
    )
    return StatusLine(cast(Any, agent), Console(width=200), interval=1.0)


def test_one_sink_shows_what_it_shipped_per_topic() -> None:
    text = line().render((0.0, 0, {"kafka_sink": {"logs": 0}}), (2.0, 400, {"kafka_sink": {"logs": 400}}))
    assert text.plain == "read 200/s  shipped 200/s  logs 200/s  total shipped 400  queue 50%"


def test_several_sinks_each_show_their_own_not_the_sum() -> None:
    prev = (0.0, 0, {"kafka_sink": {"logs": 0}, "local_file_sink": {"{source_type}.log": 0}})
    cur = (1.0, 100, {"kafka_sink": {"logs": 100}, "local_file_sink": {"{source_type}.log": 100}})
    assert line().render(prev, cur).plain == (
        "read 100/s  kafka_sink shipped 100/s  logs 100/s  total shipped 100"
        "  local_file_sink shipped 100/s  {source_type}.log 100/s  total shipped 100  queue 50%"
    )
