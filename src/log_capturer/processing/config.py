"""Configuration of processing: pipelines (the ``processing`` section) and multiline joining
(the ``multiline`` blocks of the file and container sources)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from log_capturer.config.base import Duration, Regex, Strict


class MultilineConfig(Strict):
    preset: Literal["none", "java", "python"] = Field(
        "none",
        description="Ready rules: 'java' joins stack traces (frames, 'Caused by:', the exception line) "
        "to the log line before them; 'python' joins tracebacks to the log line before them. "
        "start_pattern and continuation_pattern, when set, replace the preset's.",
    )
    start_pattern: Regex = Field(
        "",
        description="Regular expression (Python syntax, matched at the line start): a matching line "
        "always starts a new record. With no continuation_pattern, every other line continues "
        "the current record.",
    )
    continuation_pattern: Regex = Field(
        "",
        description="Regular expression: a matching line (that does not match start_pattern) is "
        "joined to the record before it, with a newline.",
    )
    timeout: Duration = Field(
        1.0,
        description="A record still open after this long without a new line is emitted. Its "
        "position is checkpointed only once the whole joined record is acknowledged.",
    )
    max_lines: int = Field(
        500, ge=2, description="A record reaching this many lines is emitted; the next line starts a new one."
    )

    @property
    def enabled(self) -> bool:
        return self.preset != "none" or bool(self.start_pattern or self.continuation_pattern)


class FileMultilineConfig(MultilineConfig):
    path_patterns: list[str] = Field(
        default_factory=list,
        description="Glob patterns (on the base name or the full path) of the files the rule applies "
        "to; empty = every file.",
    )


class ProcessingConfig(Strict):
    enabled: bool = Field(False, description="Run processing pipelines.")
    pipelines_file: str = Field(
        "",
        description="YAML file of named processing pipelines (see the README and "
        "configs/pipelines.yaml); a relative path is relative to the working directory.",
    )
    source_type_pipelines: dict[str, str] = Field(
        default_factory=dict,
        description="source_type -> pipeline, for lines whose source section names no pipeline "
        "(e.g. {docker: app-json}). A source's own 'pipeline' key wins.",
    )

    @model_validator(mode="after")
    def _check(self) -> ProcessingConfig:
        if self.enabled and not self.pipelines_file:
            raise ValueError("processing is enabled but pipelines_file is empty; set the pipelines file")
        return self
