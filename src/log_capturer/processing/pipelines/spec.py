"""The pipelines file: named pipelines, each a list of steps, validated like the main config.

```yaml
pipelines:
  nginx:
    - type: regex_extract
      pattern: '^(?P<client>\\S+) \\S+ \\S+ \\[(?P<time>[^\\]]+)\\]'
    - type: timestamp_parse
      field: time
      formats: ["%d/%b/%Y:%H:%M:%S %z"]
    - type: redact
```

A step's ``field`` names where it reads: ``message`` is the line itself, any
other name is a key of the record's ``fields`` (``a.b`` reaches into nested
objects).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from log_capturer.processing.levels import CANONICAL
from log_capturer.processing.timestamps import KEYWORDS, zone

FieldPath = Annotated[str, Field(min_length=1, pattern=r"^[^.]+(\.[^.]+)*$")]


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _compile(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return pattern


class RegexExtractSpec(StepSpec):
    type: Literal["regex_extract"]
    field: FieldPath = Field("message", description="Where to match.")
    pattern: str = Field(description="Python regular expression; its named groups become fields.")
    target: str = Field("", description="Put the groups under this object in fields ('' = top level).")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        _compile(v)
        if not re.compile(v).groupindex:
            raise ValueError("the pattern has no named group: write (?P<name>...) for each field to extract")
        return v


class JsonParseSpec(StepSpec):
    type: Literal["json_parse"]
    field: FieldPath = Field("message", description="Text holding a JSON object.")
    target: str = Field("", description="Put the members under this object in fields ('' = top level).")


class LogfmtParseSpec(StepSpec):
    type: Literal["logfmt_parse"]
    field: FieldPath = Field("message", description="Text holding key=value pairs.")
    target: str = Field("", description="Put the pairs under this object in fields ('' = top level).")


class TimestampParseSpec(StepSpec):
    type: Literal["timestamp_parse"]
    field: FieldPath = Field("timestamp", description="Field holding the time.")
    formats: list[str] = Field(
        default_factory=lambda: ["rfc3339"],
        min_length=1,
        description="Tried in order: strptime patterns, or rfc3339, unix, unix_ms, unix_us, unix_ns.",
    )
    timezone: str = Field("UTC", description="Zone of times without an offset: UTC, local or IANA name.")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        zone(v)
        return v

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        for fmt in v:
            if fmt not in KEYWORDS and "%" not in fmt:
                raise ValueError(
                    f"format {fmt!r} is neither a strptime pattern (with %-directives) nor one of "
                    + ", ".join(KEYWORDS)
                )
        return v


class FieldAddSpec(StepSpec):
    type: Literal["field_add"]
    fields: dict[FieldPath, str | int | float | bool] = Field(
        min_length=1,
        description="Values to set; text may use {{field}} templates ({{message}}, {{level}}, "
        "{{source_type}}, {{source_id}} and any field). Setting 'message' replaces the line.",
    )
    overwrite: bool = Field(True, description="Replace a field that already has a value.")


class FieldRemoveSpec(StepSpec):
    type: Literal["field_remove"]
    fields: list[FieldPath] = Field(min_length=1, description="Fields to delete.")

    @field_validator("fields")
    @classmethod
    def _no_message(cls, v: list[str]) -> list[str]:
        if "message" in v:
            raise ValueError("'message' cannot be removed (it is the line itself)")
        return v


class LogLevelExtractSpec(StepSpec):
    type: Literal["log_level_extract"]
    field: FieldPath = Field("level", description="Field holding the level.")
    mapping: dict[str, str] = Field(
        default_factory=dict,
        description="Extra spellings -> level, e.g. {'E': 'error', '5': 'debug'} (matched as text).",
    )

    @field_validator("mapping")
    @classmethod
    def _levels(cls, v: dict[str, str]) -> dict[str, str]:
        allowed = sorted(set(CANONICAL.values()))
        for raw, lvl in v.items():
            if lvl.lower() not in allowed:
                raise ValueError(f"mapping {raw!r} -> {lvl!r}: the level must be one of {', '.join(allowed)}")
        return {k: val.lower() for k, val in v.items()}


class RedactPattern(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, description="Rule name (metrics label).")
    regex: str = Field(description="What to mask; with a group named 'secret' only that part is masked.")
    replacement: str | None = Field(None, description="Mask for this rule (default: the step's).")

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str) -> str:
        return _compile(v)


class RedactSpec(StepSpec):
    type: Literal["redact"]
    builtins: list[str] | None = Field(
        None,
        description="Built-in rules to apply (default: all but the opt-in ones); see redact.BUILTINS.",
    )
    patterns: list[RedactPattern] = Field(default_factory=list, description="Custom rules.")
    replacement: str = Field("[REDACTED]", description="What a secret is replaced with.")
    message: bool = Field(True, description="Redact the message.")
    fields: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Fields whose text is redacted ('*' = every field, recursively; [] = none).",
    )
    keys: list[str] | None = Field(
        None,
        description="Field names whose whole value is masked (default: password, secret, token and "
        "similar names, case-insensitive).",
    )

    @model_validator(mode="after")
    def _known(self) -> RedactSpec:
        from log_capturer.processing.pipelines.redact import BUILTINS

        for name in self.builtins or []:
            if name not in BUILTINS:
                raise ValueError(f"unknown built-in rule {name!r}; known: {', '.join(BUILTINS)}")
        return self


AnyStep = Annotated[
    RegexExtractSpec
    | JsonParseSpec
    | LogfmtParseSpec
    | TimestampParseSpec
    | FieldAddSpec
    | FieldRemoveSpec
    | LogLevelExtractSpec
    | RedactSpec,
    Field(discriminator="type"),
]

PipelineName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]


class PipelinesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pipelines: dict[PipelineName, list[AnyStep]] = Field(
        min_length=1, description="Pipeline name -> its steps, run in order."
    )
