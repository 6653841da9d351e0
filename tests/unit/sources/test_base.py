"""What a source is built with: the listener decision of forward and OTLP in each worker."""

from __future__ import annotations

from typing import Any

import pytest

from log_capturer.config.loader import load_config_text
from log_capturer.config.schema import DispatcherConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.processing import Analyzer
from log_capturer.sources.base import BuildContext
from log_capturer.sources.forward.source import build as build_forward
from log_capturer.sources.otlp.source import build as build_otlp
from tests.unit.sources.harness import MemorySink


def ctx(worker: tuple[int, int] | None) -> BuildContext:
    cfg = load_config_text("sinks: {kafka: {enabled: true}}\n", {})
    metrics = Metrics()
    # Built, never started: a source's build only keeps it.
    dispatcher = Dispatcher(DispatcherConfig(worker_count=1), [MemorySink()], Analyzer(None), metrics)
    return BuildContext(cfg, dispatcher, metrics, worker)


@pytest.mark.parametrize(
    ("worker", "every_worker", "expected"),
    [
        (None, True, False),  # one process: its own port, not shared
        ((0, 1), True, False),
        ((0, 2), True, True),  # every worker, the port shared
        ((1, 2), True, True),
        ((0, 2), False, False),  # worker 0 only: not shared
        ((1, 2), False, None),  # the others do not listen
    ],
)
def test_who_listens_and_whether_the_port_is_shared(
    worker: tuple[int, int] | None, every_worker: bool, expected: bool | None
) -> None:
    assert ctx(worker).listener(every_worker) is expected


def test_forward_and_otlp_are_built_in_each_worker_with_the_port_shared() -> None:
    section: dict[str, Any] = {"enabled": True, "port": 0}
    cfg = load_config_text("sinks: {kafka: {enabled: true}}\n", {})
    forward = cfg.forward.model_copy(update=section)
    otlp = cfg.otlp.model_copy(update=section)
    for index in (0, 1):
        f, o = build_forward(forward, ctx((index, 2))), build_otlp(otlp, ctx((index, 2)))
        assert f is not None and f.reuse_port and o is not None and o.reuse_port
    alone = ctx(None)
    f, o = build_forward(forward, alone), build_otlp(otlp, alone)
    assert f is not None and not f.reuse_port and o is not None and not o.reuse_port
    first_only = {"every_worker": False}
    assert build_forward(forward.model_copy(update=first_only), ctx((1, 2))) is None
    assert build_otlp(otlp.model_copy(update=first_only), ctx((1, 2))) is None
    assert build_otlp(otlp.model_copy(update={"enabled": False}), ctx((0, 2))) is None
