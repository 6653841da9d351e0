"""Generate the configuration reference (docs/configuration.md) from the schema.

The descriptions in :mod:`log_capturer.config.schema` are the documentation;
``python -m log_capturer.devtools.config_doc > docs/configuration.md`` rewrites
the reference, and a test fails when the committed file is out of date.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel, SecretStr

from log_capturer.config.schema import Config, parse_duration

INTRO = """\
# Configuration reference

`log-capturer run --config FILE` reads one YAML file. Every section and key is
listed below with its type, default and meaning; an unknown key or a bad value
is an error that names the key (`log-capturer validate --config FILE` prints
every problem and exits non-zero).

- Variables inside any string follow Docker Compose's rules (as Vector's do):
  `${VAR}` is the variable's value, and an error naming the variable and the key
  when VAR is unset (set to '' is not an error); `${VAR:-default}` gives the
  default when VAR is unset or empty, `${VAR-default}` only when it is unset;
  `$$` is a literal `$` (`$${VAR}` stays `${VAR}`); a `$` not followed by `{`
  stays as it is; any other `${` is an error.
- Environment overrides, applied after the file: `KAFKA_BROKERS` (comma list)
  -> `sinks.kafka.brokers`, `KAFKA_USERNAME` -> `sinks.kafka.auth.username`,
  `KAFKA_PASSWORD` -> `sinks.kafka.auth.password`, `KAFKA_COMPRESSION` ->
  `sinks.kafka.compression`, `KAFKA_BATCH_SIZE` -> `sinks.kafka.batch_size`,
  `ELASTICSEARCH_USERNAME`, `ELASTICSEARCH_PASSWORD`, `ELASTICSEARCH_API_KEY` ->
  `sinks.elasticsearch.auth.username`, `.password`, `.api_key`. An
  error in one names the variable: `sinks.kafka.batch_size (from
  KAFKA_BATCH_SIZE): expected an integer, such as KAFKA_BATCH_SIZE=1000`.
- Broker addresses are `host:port` with a port from 1 to 65535 (IPv6:
  `[::1]:9092`), one per list item.
- The file must be UTF-8; an error names the first byte that is not, and its offset.
- `validate` also checks what `run` checks as it starts, without contacting a
  broker: that a sink is enabled, the pipelines file and the pipelines the
  config names, the TLS files (as the user running `validate`), the producer
  configuration librdkafka is given (`librdkafka_options`), `app.log_file` and
  `positions.directory`. It prints every problem of the config and of the
  pipelines file in one run and exits 2; it warns, and exits 0, for
  `sinks.kafka.required_acks: 0` (the broker confirms nothing: a line is
  checkpointed once sent, and lost if the broker never wrote it; use -1), which
  the agent also logs at WARNING when it starts.
- Durations are written `"250ms"`, `"5s"`, `"2m"`, `"1h"`, `"7d"` or as a
  number of seconds.

How `sinks.kafka` maps onto librdkafka properties is described in
[kafka-sink.md](kafka-sink.md).

This file is generated from the schema by
`python -m log_capturer.devtools.config_doc > docs/configuration.md`.
"""


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(get_args(annotation)[0])
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in get_args(annotation))
    if origin in (list,):
        return f"list of {_type_name(get_args(annotation)[0])}"
    if origin in (dict,):
        k, v = get_args(annotation)
        return f"map {_type_name(k)} -> {_type_name(v)}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation))
    if annotation is SecretStr:
        return "secret string"
    if annotation is float:
        return "number"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.is_required():  # no default, no factory
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, SecretStr):
        return '""'
    if _is_duration(field):
        return f"`{format_duration(float(value))}`"
    return f"`{json.dumps(value)}`"


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _render(model: type[BaseModel], prefix: str, out: list[str]) -> None:
    rows = []
    sections: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if _is_section(field.annotation):
            sections.append((key, typing.cast(type[BaseModel], field.annotation)))
            continue
        kind = "duration" if _is_duration(field) else _type_name(field.annotation)
        desc = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | {kind} | {_default(field)} | {desc} |")
    if rows:
        out.append(f"\n## `{prefix}`\n" if prefix else "")
        out.append("| key | type | default | meaning |")
        out.append("|---|---|---|---|")
        out.extend(rows)
    for key, sub in sections:
        _render(sub, key, out)


def _is_duration(field: Any) -> bool:
    return any(getattr(m, "func", None) is parse_duration for m in field.metadata)


def render() -> str:
    out = [INTRO]
    _render(Config, "", out)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
