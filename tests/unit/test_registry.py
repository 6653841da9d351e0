"""The component registry: every section names a component that builds from it, the agent builds
what the configuration enables, and what it does not run still has its /stats block."""

from __future__ import annotations

from pathlib import Path

from log_capturer.app import Agent, key_field_of, pipelines_by_source_type
from log_capturer.config.loader import validate
from log_capturer.registry import Sinks, Sources, sink_components, source_components
from log_capturer.sinks.base import SinkComponent
from log_capturer.sources.base import SourceComponent


def test_every_registered_section_names_a_component_of_its_kind() -> None:
    config = validate({})
    sources = source_components(config)
    assert [key for key, _s, _c in sources] == [
        "files_config",
        "syslog",
        "forward",
        "stdin",
        "http_ingest",
        "otlp",
        "kafka",
        "container_monitor",
    ]
    assert all(isinstance(comp, SourceComponent) for _k, _s, comp in sources)
    assert [key for key, _s, _c in sink_components(config.sinks)] == [
        "kafka",
        "local_file",
        "loki",
        "elasticsearch",
    ]
    assert all(isinstance(comp, SinkComponent) for _k, _s, comp in sink_components(config.sinks))
    # Every section of the file that is a source or a sink is a registry line.
    assert set(Sources.model_fields) <= set(type(config).model_fields)
    assert set(Sinks.model_fields) == set(type(config.sinks).model_fields)


def agent(tmp_path: Path, **sections: object) -> Agent:
    base: dict[str, object] = {
        "sinks": {"kafka": {"enabled": True, "brokers": ["127.0.0.1:1"]}},
        "positions": {"directory": str(tmp_path / "positions")},
        "dispatcher": {"dlq_config": {"directory": str(tmp_path / "dlq")}},
    }
    return Agent(validate({**base, **sections}))


def test_the_agent_builds_what_the_config_enables(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    a = agent(
        tmp_path,
        files_config={"watch_directories": [str(tmp_path / "logs")]},
        syslog={"enabled": True, "udp": {"port": 1514}, "tcp": {"enabled": False}},
    )
    assert [s.name for _k, s in a.sources] == ["file_source", "syslog_source", "http_ingest"]
    assert [s.name for s in a.sinks] == ["kafka_sink"]
    assert a.source("syslog_source") is not None and a.source("stdin_source") is None
    stats = a.stats()
    # What does not run keeps its block, as before the registry.
    assert stats["stdin"] == {"lines_read": 0, "unacknowledged": 0, "finished": False}
    assert stats["files"]["monitored"] == 0 and stats["syslog"]["received"] == 0
    assert a.positions() == {"files": {}, "containers": {}}


def test_a_source_section_off_builds_nothing(tmp_path: Path) -> None:
    a = agent(tmp_path, server={"enabled": False})  # no directories to watch, no API for ingest
    assert a.sources == []
    assert set(a.stats()) >= {"files", "syslog", "stdin", "http_ingest", "containers"}


def test_components_contribute_the_analysis_settings(tmp_path: Path) -> None:
    config = validate(
        {
            "files_config": {"pipeline": "app"},
            "processing": {"enabled": True, "pipelines_file": "p.yaml", "source_type_pipelines": {"x": "y"}},
            "sinks": {"kafka": {"enabled": True, "partitioning": {"key_field": "tenant"}}},
        }
    )
    assert pipelines_by_source_type(config) == {"x": "y", "file": "app"}
    assert key_field_of(config) == "tenant"
    config.sinks.kafka.partitioning.enabled = False
    assert key_field_of(config) is None
