"""The components: every source and every sink, registered by its config section.

One line per component. The line declares the section (its YAML key and its model, so its
validation and its reference in docs/configuration.md) and names the component that runs it
(``"module:NAME"``, imported only when the agent is built, so that ``log-capturer validate``
needs no Kafka client). The agent builds whatever the configuration enables from these lines
(:mod:`log_capturer.app`); a new source or sink is one folder (its ``config``, its component)
and one line here.

Sources are top-level sections of ``config.yaml``; sinks are the sections of ``sinks``. A
section may belong to another component (``kubernetes`` is read by the container source): it
names no component of its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from log_capturer.config.base import Strict
from log_capturer.sinks.elasticsearch.config import ElasticsearchSinkConfig
from log_capturer.sinks.kafka.config import KafkaSinkConfig
from log_capturer.sinks.local_file.config import LocalFileSinkConfig
from log_capturer.sinks.loki.config import LokiSinkConfig
from log_capturer.sources.containers.config import ContainerMonitorConfig, KubernetesConfig
from log_capturer.sources.file.config import FilesConfig
from log_capturer.sources.forward.config import ForwardConfig
from log_capturer.sources.http.config import HttpIngestConfig
from log_capturer.sources.kafka.config import KafkaSourceConfig
from log_capturer.sources.otlp.config import OtlpConfig
from log_capturer.sources.stdin.config import StdinConfig
from log_capturer.sources.syslog.config import SyslogConfig

if TYPE_CHECKING:
    from log_capturer.sinks.base import SinkComponent
    from log_capturer.sources.base import SourceComponent


def component(model: type[BaseModel], name: str | None, read_by: str = "") -> Any:
    """A section validated by ``model`` and run by the component at ``name`` ("module:NAME"), or
    read by the component of section ``read_by`` (``name`` None): a reload that changes it
    rebuilds that component."""
    return Field(default_factory=model, json_schema_extra={"component": name or "", "read_by": read_by})


class Sources(Strict):
    """The sources, in the order they start."""

    files_config: FilesConfig = component(FilesConfig, "log_capturer.sources.file.source:COMPONENT")
    syslog: SyslogConfig = component(SyslogConfig, "log_capturer.sources.syslog.source:COMPONENT")
    forward: ForwardConfig = component(ForwardConfig, "log_capturer.sources.forward.source:COMPONENT")
    stdin: StdinConfig = component(StdinConfig, "log_capturer.sources.stdin.source:COMPONENT")
    http_ingest: HttpIngestConfig = component(HttpIngestConfig, "log_capturer.sources.http.source:COMPONENT")
    otlp: OtlpConfig = component(OtlpConfig, "log_capturer.sources.otlp.source:COMPONENT")
    kafka: KafkaSourceConfig = component(KafkaSourceConfig, "log_capturer.sources.kafka.source:COMPONENT")
    container_monitor: ContainerMonitorConfig = component(
        ContainerMonitorConfig, "log_capturer.sources.containers.source:COMPONENT"
    )
    kubernetes: KubernetesConfig = component(KubernetesConfig, None, read_by="container_monitor")


class Sinks(Strict):
    """The sinks (``sinks.<name>``)."""

    kafka: KafkaSinkConfig = component(KafkaSinkConfig, "log_capturer.sinks.kafka.sink:COMPONENT")
    local_file: LocalFileSinkConfig = component(
        LocalFileSinkConfig, "log_capturer.sinks.local_file.sink:COMPONENT"
    )
    loki: LokiSinkConfig = component(LokiSinkConfig, "log_capturer.sinks.loki.sink:COMPONENT")
    elasticsearch: ElasticsearchSinkConfig = component(
        ElasticsearchSinkConfig, "log_capturer.sinks.elasticsearch.sink:COMPONENT"
    )


def _components(model: type[Strict], values: BaseModel) -> Iterator[tuple[str, BaseModel, Any]]:
    for key, info in model.model_fields.items():
        extra = info.json_schema_extra
        name = str(extra.get("component", "")) if isinstance(extra, dict) else ""
        if not name:
            continue
        module, _, attr = name.partition(":")
        yield key, getattr(values, key), getattr(importlib.import_module(module), attr)


def source_components(config: Sources) -> list[tuple[str, BaseModel, SourceComponent[Any]]]:
    """(section key, its config, its component) of every registered source, in start order."""
    return list(_components(Sources, config))


def sink_components(sinks: Sinks) -> list[tuple[str, BaseModel, SinkComponent[Any]]]:
    """(section key, its config, its component) of every registered sink."""
    return list(_components(Sinks, sinks))
