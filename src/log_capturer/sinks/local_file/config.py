"""The ``sinks.local_file`` section: records written to files on this machine.

The keys are the original agent's (``directory``, ``filename_pattern``, ``output_format``,
``text_format``, ``rotation``, ``auto_sync``, ``sync_interval``, ``file_permissions``,
``dir_permissions``, ``queue_size``, ``worker_count``), plus the delivery keys every sink of the
engine has (``timeout``, ``backpressure_config``, ``circuit_breaker``) and the ``encoding`` block
every sink has (:mod:`log_capturer.sinks.encoding`): with ``output_format: json`` each line of
the file is the record ``encoding`` makes (the json envelope by default, byte for byte what Kafka
gets with the same block).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from log_capturer.config.base import Duration, Strict
from log_capturer.reliability.config import BackpressureConfig, CircuitBreakerConfig
from log_capturer.sinks.encoding import EncodingConfig

#: The placeholders of ``filename_pattern`` (see :mod:`.files`).
PLACEHOLDERS = ("date", "hour", "year", "month", "day", "source_type", "source_id", "level", "worker")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _mode(value: Any) -> int:
    """A permission mode: text in octal (``"0644"``), or the number YAML reads from ``0644``."""
    if isinstance(value, bool):
        raise ValueError("a permission mode is octal text such as '0644'")
    if isinstance(value, str):
        try:
            value = int(value, 8)
        except ValueError:
            raise ValueError(f"{value!r} is not an octal mode; write it like '0644'") from None
    if not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ValueError(f"{value!r} is not a permission mode; write it as octal text in quotes, like '0644'")
    return value


Mode = Annotated[int, BeforeValidator(_mode)]


class TextFormatConfig(Strict):
    """How a record is written with ``output_format: text``: one line of fields joined by
    ``field_separator``: timestamp, level, source_type/source_id, labels (name=value), message."""

    include_timestamp: bool = Field(True, description="Start the line with the record's timestamp.")
    timestamp_format: str = Field(
        "rfc3339",
        description="'rfc3339' writes the record's timestamp as Kafka gets it (UTC, nanoseconds); "
        "anything else is a strftime format applied to it in UTC (e.g. '%Y-%m-%d %H:%M:%S').",
    )
    include_labels: bool = Field(True, description="Write the source's labels as name=value pairs.")
    field_separator: str = Field(" ", description="Text between two fields of a line.")
    raw_message_only: bool = Field(
        False, description="Write only the message, as it was read (the other text_format keys are ignored)."
    )


class RotationConfig(Strict):
    """Rotation closes a file and starts the next one. By time: when the ``filename_pattern``'s
    time placeholders ({date}, {hour}...) name another file, the previous one is closed. By size:
    a file reaching ``max_size_mb`` is renamed ``<name>.<UTC time>`` and a new one is opened. Closed
    files are compressed and expired by the settings below; with rotation disabled files only
    change name with the pattern, and nothing is compressed or deleted."""

    enabled: bool = Field(True, description="Rotate by size, compress and expire closed files.")
    max_size_mb: int = Field(100, ge=1, description="Size (MiB) at which a file is rotated.")
    max_files: int = Field(
        10,
        ge=1,
        description="Most closed (rotated) files kept in the directory; the oldest beyond that are deleted. "
        "The files being written do not count.",
    )
    retention_days: int = Field(
        7, ge=1, description="Closed files last modified longer ago than this are deleted."
    )
    compress: bool = Field(True, description="Compress closed files with gzip (<name>.gz).")


class LocalFileDLQConfig(Strict):
    """What the local file sink parks in the local DLQ (``dispatcher.dlq_config``), shaped like
    Kafka's ``dlq_config``. Records refused for their own sake are always parked."""

    send_on_timeout: bool = Field(
        True,
        description="A record the directory keeps refusing (full, unwritable) for 'timeout' is parked "
        "and acknowledged, to be written by the DLQ's reprocessing once it recovers. False: it is "
        "retried until written, and its lines stay unacknowledged meanwhile.",
    )


class LocalFileSinkConfig(Strict):
    enabled: bool = Field(False, description="Write records to files in 'directory'.")
    directory: str = Field("./data/output", description="Directory of the files (created if missing).")
    filename_pattern: str = Field(
        "logs-{date}.log",
        description="Name of the file a record is written to, in 'directory'. Placeholders: {date} "
        "(YYYY-MM-DD), {hour} (HH), {year}, {month}, {day}: the time the record is written, UTC; "
        "{source_type}, {source_id} (characters other than letters, digits, '.', '_' and '-' "
        "become '_'), {level} ('unknown' when none), {worker} (the worker's number with app.workers > 1, "
        "else 0; required then, so that no two processes write one file). A placeholder that "
        "changes starts a new file.",
    )
    output_format: Literal["text", "json"] = Field(
        "json",
        description="'json': one record per line, as 'encoding' makes it (by default the JSON "
        "envelope, exactly the record sent to Kafka); 'text': one line per record as text_format says.",
    )
    encoding: EncodingConfig = Field(
        default_factory=EncodingConfig,
        description="How each record is written with output_format: json, the same block as "
        "sinks.kafka.encoding: codec json (the envelope, the default), raw (the line as read) or "
        "logfmt; only_fields / except_fields (labels.app, fields.user.id); timestamp_format.",
    )
    text_format: TextFormatConfig = Field(default_factory=TextFormatConfig)
    rotation: RotationConfig = Field(default_factory=RotationConfig)
    auto_sync: bool = Field(
        True,
        description="true: a record is acknowledged (its source's position may move) only after "
        "fsync put it on disk: it survives a power loss. false: once the operating system has it "
        "(write): it survives the agent being killed, not a crash of the machine.",
    )
    sync_interval: Duration = Field(
        0.0,
        description="With auto_sync: 0 syncs every batch before it is acknowledged; more groups the "
        "batches of that long into one fsync (fewer syncs, acknowledgements up to that much later).",
    )
    file_permissions: Mode = Field(0o644, description="Mode of new files, octal text ('0644').")
    dir_permissions: Mode = Field(0o755, description="Mode of directories it creates, octal text ('0755').")
    queue_size: int = Field(
        10000,
        ge=1,
        description="Records the sink may hold unacknowledged (being written, waiting for a sync or a "
        "retry); its backpressure levels are shares of it.",
    )
    queue_max_bytes: int = Field(
        32 << 20, ge=1 << 20, description="The same, in bytes of records; whichever is reached first."
    )
    worker_count: int = Field(
        1,
        ge=1,
        le=16,
        description="Writer threads. Each file is written by one of them (chosen by its name), so "
        "records of one file keep their order; more threads help when the pattern names many files.",
    )
    timeout: Duration = Field(
        30.0,
        description="The budget a broken directory (full, unwritable) may hold the lines: a record "
        "it keeps refusing this long is parked in the local DLQ (dlq_config.send_on_timeout), and "
        "once the sink acknowledged nothing for this long the lines waiting for it overflow there "
        "too (see "
        "backpressure_config), so the other sinks and the sources go on. Parked records are written "
        "by the DLQ's reprocessing once the directory takes writes again (after newer lines).",
    )
    dlq_config: LocalFileDLQConfig = Field(default_factory=LocalFileDLQConfig)
    backpressure_config: BackpressureConfig = Field(default_factory=BackpressureConfig)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)

    @field_validator("filename_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        if not value or "/" in value or value in (".", ".."):
            raise ValueError("a file name without '/' (the directory is 'directory'), e.g. 'logs-{date}.log'")
        unknown = [p for p in _PLACEHOLDER.findall(value) if p not in PLACEHOLDERS]
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{unknown[0]}}}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> LocalFileSinkConfig:
        if self.output_format == "text" and "encoding" in self.model_fields_set:
            raise ValueError(
                "sinks.local_file.encoding and sinks.local_file.output_format: text both shape the "
                "line; keep one: encoding (with output_format: json, the default) or text_format "
                "(with output_format: text; text_format.raw_message_only is the line as read)"
            )
        return self

    @field_validator("text_format")
    @classmethod
    def _strftime(cls, value: TextFormatConfig) -> TextFormatConfig:
        if value.timestamp_format != "rfc3339" and "%" not in value.timestamp_format:
            raise ValueError(
                f"text_format.timestamp_format {value.timestamp_format!r} has no % directive: write "
                "'rfc3339' or a strftime format such as '%Y-%m-%d %H:%M:%S'"
            )
        return value
