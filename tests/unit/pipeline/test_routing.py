"""Routes: which sinks a source's lines go to, and what a chunk then expects."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from log_capturer.config.schema import Config, DispatcherConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.pipeline.config import RouteConfig
from log_capturer.pipeline.dispatcher import Dispatcher
from log_capturer.pipeline.routing import Router
from log_capturer.processing import Analyzer
from log_capturer.record import Chunk, Origin
from tests.unit.pipeline.test_dispatcher import GateSink


def route(**kw: object) -> RouteConfig:
    return RouteConfig.model_validate(kw)


def test_without_routes_every_sink_gets_every_source() -> None:
    r = Router([], [("kafka", "K"), ("local_file", "F")])
    assert r.sinks_for(Origin("syslog", "udp")) == ("K", "F")


def test_the_first_matching_route_decides_and_unmatched_sources_go_everywhere() -> None:
    r = Router(
        [
            route(source_types=["syslog"], sinks=["local_file"]),
            route(source_ids=["/var/log/audit/*"], labels={"team": "sec"}, sinks=["kafka", "local_file"]),
            route(source_types=["file"], sinks=["kafka"]),
        ],
        [("kafka", "K"), ("local_file", "F")],
    )
    assert r.sinks_for(Origin("syslog", "udp")) == ("F",)
    assert r.sinks_for(Origin("file", "/var/log/audit/a.log", {"team": "sec"})) == ("K", "F")
    assert r.sinks_for(Origin("file", "/var/log/audit/a.log", {"team": "ops"})) == ("K",)
    assert r.sinks_for(Origin("docker", "abc")) == ("K", "F")


def test_routes_name_enabled_sinks_or_the_config_says_which_and_how_to_fix_it() -> None:
    base = {"sinks": {"kafka": {"enabled": True}}}
    with pytest.raises(ValidationError, match=r"routes\[0\]\.sinks: no sink named 'splunk'"):
        Config.model_validate({**base, "routes": [{"sinks": ["splunk"]}]})
    with pytest.raises(
        ValidationError, match=r"sink 'local_file' is not enabled; set sinks.local_file.enabled"
    ):
        Config.model_validate({**base, "routes": [{"source_types": ["file"], "sinks": ["local_file"]}]})
    with pytest.raises(ValidationError, match="sinks"):
        Config.model_validate({**base, "routes": [{"source_types": ["file"], "sinks": []}]})
    ok = Config.model_validate({**base, "routes": [{"source_types": ["file"], "sinks": ["kafka"]}]})
    assert ok.routes[0].source_types == ["file"]


class Named(GateSink):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


def test_a_chunk_expects_one_ack_per_line_per_sink_it_is_routed_to() -> None:
    kafka, files = Named("kafka"), Named("files")
    files.open.clear()  # it holds what it gets: nothing is acknowledged by it
    router = Router(
        [route(source_types=["syslog"], sinks=["kafka"])], [("kafka", kafka), ("local_file", files)]
    )
    d = Dispatcher(
        DispatcherConfig.model_validate({"worker_count": 1}),
        [kafka, files],
        Analyzer(None),
        Metrics(),
        router,
    )
    d.start()
    syslog = Chunk(Origin("syslog", "udp"), ["a", "b"])
    done = threading.Event()
    cp = Checkpoint(0)
    assert d.submit(syslog, cp, timeout=2)  # only kafka is asked whether it accepts
    syslog.on_done(lambda _c: done.set())
    assert done.wait(5)
    assert kafka.got == ["a", "b"] and files.got == []
    files.open.set()
    both = Chunk(Origin("file", "/x.log"), ["c"])
    assert d.submit(both, None)
    d.close(5)
    assert both.done and kafka.got == ["a", "b", "c"] and files.got == ["c"]
