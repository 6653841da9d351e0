"""Configuration reload (``POST /config/reload``, SIGHUP): what a new configuration changes, and
what the agent answers.

A reload applies a changed configuration to a running agent without a restart and without
losing or repeating a line (:meth:`log_capturer.app.Agent.reload` does it):

1. The new file is loaded and validated exactly as at start (``${VAR}``, environment
   overrides, every check of ``log-capturer validate``). If it fails, the reload is refused
   with its problems and the running configuration is kept.
2. Settings that shape the process itself cannot change while it runs (:data:`RESTART_ONLY`:
   its API and metrics ports, its logs, the dispatcher's queues and workers, the local DLQ,
   the positions directory, standard input). If one of them changed, the reload is refused
   and says which; Vector refuses changed global options on reload the same way.
3. Otherwise the sections that changed are applied: sources (each one whose section changed is
   stopped and built again; the others keep running), sinks (each one whose section changed is
   replaced), processing (the pipelines, re-read from ``processing.pipelines_file`` even
   when only that file changed) and ``routes``. To apply them, the agent first holds every source at the
   dispatcher's gate (the same wait as backpressure) and lets what is queued be delivered and
   acknowledged: a replaced sink gets nothing new after that, a replaced source's positions
   cover every line it handed over, and its successor starts exactly there. If the sinks do not
   get there within ``dispatcher.drain_timeout`` (a broker away), nothing is changed, the
   sources go on, and the reload fails with the count of lines still outstanding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from log_capturer.registry import Sinks, Sources

if TYPE_CHECKING:
    from log_capturer.config.schema import Config

#: Sections that cannot change while the agent runs: a reload that changes one is refused.
RESTART_ONLY: tuple[str, ...] = ("app", "server", "metrics", "dispatcher", "positions", "stdin")

Status = Literal["reloaded", "unchanged", "refused", "failed"]

#: The HTTP status of each outcome of ``POST /config/reload``.
HTTP_STATUS: dict[Status, int] = {"reloaded": 200, "unchanged": 200, "refused": 422, "failed": 503}


@dataclass
class Outcome:
    """What a reload did: ``status``, the sections it changed, and the problems that stopped it."""

    status: Status
    changed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.status]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "changed": self.changed}
        if self.errors:
            out["errors"] = self.errors
        return out

    @classmethod
    def refused(cls, errors: list[str]) -> Outcome:
        return cls("refused", errors=errors)


@dataclass
class Changes:
    """The sections a new configuration changes, by kind (keys as in the YAML file)."""

    sources: list[str] = field(default_factory=list)
    sinks: list[str] = field(default_factory=list)
    processing: bool = False
    routes: bool = False

    @property
    def sections(self) -> list[str]:
        sinks = [f"sinks.{key}" for key in self.sinks]
        return self.sources + sinks + ["processing"] * self.processing + ["routes"] * self.routes

    def __bool__(self) -> bool:
        return bool(self.sources or self.sinks or self.processing or self.routes)


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """One message per section of :data:`RESTART_ONLY` that differs, naming the keys; with
    ``sinks.kafka.delivery: exactly_once`` (before or after), the file source and the Kafka sink
    too: their positions live in the open transaction, and a rebuilt source would resume from a
    positions file that mode does not write."""
    out = []
    if "exactly_once" in (old.sinks.kafka.delivery, new.sinks.kafka.delivery):
        for section, a, b in (
            ("files_config", old.files_config, new.files_config),
            ("sinks.kafka", old.sinks.kafka, new.sinks.kafka),
        ):
            if a != b:
                out.append(
                    f"{section}: cannot change while the agent runs with sinks.kafka.delivery: "
                    "exactly_once; restart the agent to apply it"
                )
    for section in RESTART_ONLY:
        keys = _changed_keys(getattr(old, section).model_dump(), getattr(new, section).model_dump())
        if keys:
            listed = ", ".join(f"{section}.{k}" for k in keys)
            out.append(
                f"{listed}: cannot change while the agent runs; restart the agent to apply it, or "
                "put the running value back to reload the rest"
            )
    return out


def changes(old: Config, new: Config, pipelines_changed: bool = False) -> Changes:
    """What :meth:`Agent.reload` has to apply. A changed section that no component runs itself
    (``kubernetes``) changes the source that reads it (its registry line's ``read_by``)."""
    changed = {key for key in Sources.model_fields if getattr(old, key) != getattr(new, key)}
    for key in list(changed):
        if reader := _extra(Sources.model_fields[key].json_schema_extra, "read_by"):
            changed.add(reader)
    sources = [
        key
        for key, info in Sources.model_fields.items()
        if key in changed and key not in RESTART_ONLY and _extra(info.json_schema_extra, "component")
    ]
    sinks = [key for key in Sinks.model_fields if getattr(old.sinks, key) != getattr(new.sinks, key)]
    processing = old.processing != new.processing or (new.processing.enabled and pipelines_changed)
    return Changes(sources, sinks, processing, old.routes != new.routes)


def _extra(extra: Any, name: str) -> str:
    return str(extra.get(name, "")) if isinstance(extra, dict) else ""


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two dumps of a section."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [prefix.rstrip(".")] if old != new else []
