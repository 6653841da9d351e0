"""A pipeline applied to a chunk, and loading the pipelines file."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from log_capturer.config.explain import Place, decode_utf8, describe
from log_capturer.processing.pipelines.spec import AnyStep, PipelinesFile
from log_capturer.processing.pipelines.steps import Context, Event, Step, build_step
from log_capturer.record import Chunk

if TYPE_CHECKING:
    from log_capturer.observability.metrics import Metrics

log = logging.getLogger(__name__)


class PipelineError(Exception):
    """The pipelines file is unreadable or invalid; ``problems`` names each bad key and the fix."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        where = f" in {source}" if source else ""
        super().__init__(f"invalid pipelines{where}:\n" + "\n".join(f"  - {p}" for p in problems))


class Pipeline:
    """Named steps run over every line of a chunk.

    :meth:`apply` turns the chunk's lines into events (message, fields from
    ``chunk.meta``, preset level and time), runs each step over all of them,
    and writes the results back: ``lines`` (what is shipped as ``message``),
    ``meta`` (``fields``), ``preset_levels`` and ``timestamps``.
    """

    def __init__(self, name: str, steps: list[Step], metrics: Metrics | None = None) -> None:
        self.name = name
        self.steps = steps
        self.metrics = metrics
        #: Totals since start, for ``pipeline test`` and /stats.
        self.failures: Counter[str] = Counter()
        self.redactions: Counter[str] = Counter()

    @classmethod
    def from_specs(cls, name: str, specs: list[AnyStep], metrics: Metrics | None = None) -> Pipeline:
        return cls(name, [build_step(i, s) for i, s in enumerate(specs)], metrics)

    def apply(self, chunk: Chunk) -> None:
        lines, meta = chunk.lines, chunk.meta
        preset, stamps = chunk.preset_levels, chunk.timestamps
        events = [
            Event(
                line,
                dict(meta[i] or {}) if meta is not None else {},
                preset[i] if preset is not None else None,
                stamps[i] if stamps is not None else None,
            )
            for i, line in enumerate(lines)
        ]
        ctx = Context(chunk.origin.source_type, chunk.origin.source_id)
        failures: list[tuple[str, int]] = []
        for step in self.steps:
            try:
                failed = step.run(events, ctx)
            except Exception:
                # A defect in a step must not stop the dispatcher: the lines go on, counted.
                log.exception("pipeline %s step %s raised", self.name, step.label)
                failed = len(events)
            if failed:
                failures.append((step.label, failed))
        chunk.lines = [ev.message for ev in events]
        fields = [ev.fields or None for ev in events]
        chunk.meta = fields if any(f is not None for f in fields) else None
        levels = [ev.level for ev in events]
        chunk.preset_levels = levels if any(lvl is not None for lvl in levels) else None
        if stamps is not None or any(ev.ts is not None for ev in events):
            read = chunk.read_time_ns
            chunk.timestamps = [read if ev.ts is None else ev.ts for ev in events]
        self._count(len(events), failures, ctx.redactions)

    def _count(self, lines: int, failures: list[tuple[str, int]], redactions: Counter[str]) -> None:
        for label, n in failures:
            self.failures[label] += n
        self.redactions.update(redactions)
        m = self.metrics
        if m is None:
            return
        m.pipeline_lines.labels(self.name).inc(lines)
        for label, n in failures:
            m.pipeline_step_failures.labels(self.name, label).inc(n)
        for rule, n in redactions.items():
            m.pipeline_redactions.labels(self.name, rule).inc(n)


def parse_pipelines(data: Any, metrics: Metrics | None = None, source: str = "") -> dict[str, Pipeline]:
    """Validate parsed YAML and build every pipeline."""
    try:
        spec = PipelinesFile.model_validate(data)
    except ValidationError as exc:
        problems: dict[str, None] = {}
        for err in exc.errors():
            if err["type"] == "union_tag_invalid":
                msg = (
                    f"{Place(PipelinesFile, tuple(err['loc'])).key}: unknown step type; use regex_extract, "
                    "json_parse, logfmt_parse, timestamp_parse, field_add, field_remove, "
                    "log_level_extract or redact"
                )
            elif err["type"] == "union_tag_not_found":
                msg = f"{Place(PipelinesFile, tuple(err['loc'])).key}: each step needs a 'type'"
            else:
                msg = describe(err, PipelinesFile)
            problems[msg] = None
        raise PipelineError(list(problems), source) from None
    return {name: Pipeline.from_specs(name, steps, metrics) for name, steps in spec.pipelines.items()}


def load_pipelines(path: str | Path, metrics: Metrics | None = None) -> dict[str, Pipeline]:
    """Read and build the pipelines of a YAML file; :class:`PipelineError` names every problem."""
    p = Path(path)
    try:
        data = yaml.safe_load(decode_utf8(p.read_bytes()))
    except OSError as exc:
        raise PipelineError([f"cannot read {p}: {exc.strerror}"]) from None
    except ValueError as exc:  # not UTF-8
        raise PipelineError([str(exc)], str(p)) from None
    except yaml.YAMLError as exc:
        raise PipelineError([f"not valid YAML: {exc}"], str(p)) from None
    return parse_pipelines(data, metrics, str(p))
