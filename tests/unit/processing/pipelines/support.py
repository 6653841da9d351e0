"""Build a one-off pipeline from YAML steps and run it over lines, as the agent does."""

from __future__ import annotations

from typing import Any

import orjson
import yaml

from log_capturer.processing import Analyzer
from log_capturer.processing.pipelines import Pipeline, parse_pipelines
from log_capturer.record import Chunk, Origin
from log_capturer.sinks.kafka.encode import encode_chunk

READ_NS = 1_795_593_600 * 1_000_000_000  # 2026-11-25T08:00:00Z


def pipeline(steps_yaml: str) -> Pipeline:
    return parse_pipelines(yaml.safe_load("pipelines:\n  p:\n" + steps_yaml))["p"]


def run(
    p: Pipeline,
    lines: list[str],
    meta: list[dict[str, Any] | None] | None = None,
    key_field: str | None = "tenant_id",
) -> list[dict[str, Any]]:
    """The records the Kafka sink would write for ``lines`` after ``p``."""
    chunk = Chunk(Origin("file", "/var/log/app.log", pipeline=p.name), list(lines), read_time_ns=READ_NS)
    chunk.meta = meta
    Analyzer(key_field, {p.name: p}).analyze(chunk)
    return [orjson.loads(v) for v in encode_chunk(chunk, key_field)]
