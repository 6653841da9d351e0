"""The configuration schema: every key a user can write in ``config.yaml``.

Each model rejects unknown keys, and each field's description is the user
documentation (``docs/configuration.md`` is checked against it by a test).
Durations accept ``"250ms"``, ``"5s"``, ``"2m"``, ``"1h"``, ``"7d"`` or a number
of seconds.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Turn ``"5s"``-style text (or a number of seconds) into seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like '500ms', '5s', '2m', '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(
            f"{value!r} is not a duration; write a number with a unit: '500ms', '5s', '2m', '1h', '7d'"
        )
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


# --- app, server, metrics -------------------------------------------------------------------


class AppConfig(Strict):
    name: str = Field("ssw-logs-capture", description="Service name used in the agent's own logs.")
    version: str | None = Field(
        None,
        description="Deprecated and ignored; accepted so that configs of the original agent (which set "
        "'v0.0.2') still load. /health (`version` and `app.version`), the agent's logs and "
        "`log-capturer version` report the installed package's version. When set, `validate` and "
        "`run` warn that it is ignored.",
    )
    environment: str = Field("production", description="Environment label for the agent's own logs.")
    log_level: Literal["debug", "info", "warn", "warning", "error"] = Field(
        "info", description="Level of the agent's own logs."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="Format of the agent's own logs on stderr: one JSON object per line, or text."
    )
    log_file: str = Field("", description="Also write the agent's own logs to this file ('' = stderr only).")
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Agent processes (`log-capturer run --workers N` overrides). 1: one process. "
        "N > 1: a supervisor starts N worker processes, each a full agent with its own dispatcher "
        "and Kafka producer. Files and containers are split between them by a hash of their source_id "
        "(BLAKE2b) modulo N, "
        "so one file and its rotations stay in one worker (order and checkpoints are kept); "
        "syslog, HTTP ingest and DLQ reprocessing run in worker 0; queue sizes (dispatcher and "
        "sinks.kafka) are the whole agent's and each worker gets 1/N of them; the supervisor "
        "serves server.port and metrics.port for the whole agent and restarts a worker that dies. "
        "See the README, 'Multi-process mode'.",
    )


class ServerConfig(Strict):
    enabled: bool = Field(True, description="Serve the API (/health, /stats, /positions).")
    host: str = Field("0.0.0.0", description="Address the API server binds to.")
    port: Port = Field(8401, description="API server port.")
    stalled_after: Duration = Field(
        30.0,
        description="GET /health reports the 'delivery' check degraded (503) when lines wait for "
        "Kafka's acknowledgement and none was acknowledged for this long.",
    )


class MetricsConfig(Strict):
    enabled: bool = Field(True, description="Serve Prometheus metrics.")
    host: str = Field("0.0.0.0", description="Address the metrics server binds to.")
    port: Port = Field(8001, description="Metrics server port; also serves a plain GET /health -> OK.")
    path: str = Field("/metrics", pattern=r"^/", description="Path of the Prometheus endpoint.")
    file_lag_series_limit: int = Field(
        100,
        ge=0,
        le=100_000,
        description="Most files exported one by one in file_lag_bytes{source_type,path} (those with "
        "the largest lag), which bounds the metric's series; files_lag_bytes always sums every file. "
        "0 = the sum only.",
    )


# --- sources --------------------------------------------------------------------------------


def _check_regex(value: str) -> str:
    if value:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_check_regex)]


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


class FilesConfig(Strict):
    enabled: bool = Field(True, description="Tail files under watch_directories.")
    watch_directories: list[str] = Field(
        default_factory=list, description="Directories to search for log files."
    )
    include_patterns: list[str] = Field(
        default_factory=lambda: ["*.log"],
        description="Glob patterns a file's name must match (fnmatch, on the base name).",
    )
    exclude_patterns: list[str] = Field(
        default_factory=lambda: ["*.gz", "*.zip", "*.bz2", "*.xz", "*.zst", "*.lz4"],
        description="Glob patterns that exclude a file (base name or full path); "
        "compressed files by default.",
    )
    exclude_directories: list[str] = Field(
        default_factory=list, description="Directories (and everything below them) never searched."
    )
    recursive: bool = Field(True, description="Search sub-directories of watch_directories.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Static labels added to every record from files (e.g. tenant_id for the key).",
    )
    read_from: Literal["beginning", "end"] = Field(
        "beginning",
        description="Where to start in a file found at start-up that has no saved position. Files "
        "that appear later are always read from their beginning.",
    )
    poll_interval: Duration = Field(
        0.1,
        description="Longest wait between two looks at the files for new data. After a look that "
        "found data the next one comes after 5 ms, and the wait doubles while nothing new arrives, "
        "up to this value: busy files are read with little delay, idle ones cost little.",
    )
    rescan_interval: Duration = Field(
        5.0, description="How often watch_directories are searched for new, rotated or removed files."
    )
    read_buffer_bytes: int = Field(
        1 << 20, ge=4096, le=64 << 20, description="Largest read from one file in one go."
    )
    max_line_bytes: int = Field(
        1 << 20,
        ge=256,
        description="Longest line kept whole; longer lines are truncated to this size and marked "
        "'truncated: true' in the record (counted in metrics).",
    )
    pipeline: str = Field(
        "", description="Processing pipeline (a name in processing.pipelines_file) for lines from files."
    )
    encoding_errors: Literal["backslashreplace", "replace"] = Field(
        "backslashreplace",
        description="What becomes of bytes that are not valid UTF-8: 'backslashreplace' keeps them "
        "as \\xNN escapes (nothing lost), 'replace' writes U+FFFD instead.",
    )
    max_open_files: int = Field(
        256,
        ge=8,
        description="Most log files held open at once. Beyond it, the least recently read files are "
        "closed and watched by path, and reopened (checked by device, inode and fingerprint) when "
        "they grow. Rotated files still being read keep their descriptor.",
    )
    close_inactive: Duration = Field(
        300.0,
        description="Close a file that has not grown for this long (it is reopened when it grows).",
    )
    multiline: FileMultilineConfig = Field(default_factory=FileMultilineConfig)

    @model_validator(mode="after")
    def _check(self) -> FilesConfig:
        if self.enabled and not self.include_patterns:
            raise ValueError("include_patterns is empty, so no file would ever match; add e.g. '*.log'")
        return self


class SyslogUDPConfig(Strict):
    enabled: bool = Field(True, description="Listen for syslog datagrams (RFC 5426: one message each).")
    host: str = Field("0.0.0.0", description="Address the UDP listener binds to.")
    port: Port = Field(5140, description="UDP port (514 needs root or CAP_NET_BIND_SERVICE).")
    receive_buffer_bytes: int = Field(
        4 << 20,
        ge=0,
        description="Socket receive buffer (SO_RCVBUF): UDP has no backpressure, so bursts the agent "
        "cannot read at once wait here or are dropped by the kernel (counted in "
        "source_lines_dropped_total{reason='udp_receive_buffer_full'}). Linux caps it at "
        "net.core.rmem_max. 0 = system default.",
    )


class SyslogTLSConfig(Strict):
    enabled: bool = Field(
        False,
        description="Syslog over TLS (RFC 5425): the TCP listener speaks TLS only, 1.2 or newer (6514 is "
        "the usual port); frames as over plain TCP. Its records have source_id tls://SENDER-IP. "
        "A failed handshake is counted in errors_total{component='syslog_source',error_type='tls_handshake'} "
        "and logged (at most once per 10 s).",
    )
    cert_file: str = Field("", description="The listener's certificate (PEM; its chain may follow it).")
    key_file: str = Field("", description="The private key of cert_file (PEM, unencrypted).")
    ca_file: str = Field(
        "",
        description="PEM file of the CA(s) that sign client certificates: when set, clients must "
        "present one (mutual TLS); '' accepts any client.",
    )

    @model_validator(mode="after")
    def _check(self) -> SyslogTLSConfig:
        if self.enabled and not (self.cert_file and self.key_file):
            raise ValueError("tls is enabled but cert_file or key_file is empty; set both (PEM files)")
        return self


class SyslogTCPConfig(Strict):
    enabled: bool = Field(
        True,
        description="Listen for syslog over TCP. Each frame is octet-counted (RFC 6587 '<len> <msg>') or "
        "ends with a newline; both are accepted on the same connection.",
    )
    host: str = Field("0.0.0.0", description="Address the TCP listener binds to.")
    port: Port = Field(5140, description="TCP port.")
    max_connections: int = Field(
        1000, ge=1, description="Most simultaneous connections; further ones are closed at once."
    )
    tls: SyslogTLSConfig = Field(default_factory=SyslogTLSConfig)


class SyslogConfig(Strict):
    enabled: bool = Field(
        False,
        description="Receive syslog messages (RFC 3164 and RFC 5424, detected per message). The "
        "severity sets the level (0-1 fatal, 2 critical, 3 error, 4 warn, 5-6 info, 7 debug); "
        "facility, severity, hostname, appname, procid, msgid, structured_data and source_ip go "
        "into fields; the message's own time is the record timestamp.",
    )
    udp: SyslogUDPConfig = Field(default_factory=SyslogUDPConfig)
    tcp: SyslogTCPConfig = Field(default_factory=SyslogTCPConfig)
    max_message_bytes: int = Field(
        65536,
        ge=256,
        le=16 << 20,
        description="Longest message kept whole; longer ones are truncated and marked 'truncated: true'.",
    )
    batch_lines: int = Field(
        1000, ge=1, description="Most messages per chunk handed to the dispatcher (one per sender)."
    )
    batch_wait: Duration = Field(
        0.01, description="Longest a received message waits for more before its chunk is handed on."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Static labels of syslog records.")
    pipeline: str = Field("", description="Processing pipeline for syslog messages.")

    @model_validator(mode="after")
    def _check(self) -> SyslogConfig:
        if self.enabled and not (self.udp.enabled or self.tcp.enabled):
            raise ValueError("syslog is enabled but neither udp nor tcp is; enable one of them")
        if self.batch_wait > 10:
            raise ValueError("batch_wait can be at most 10s")
        return self


class StdinConfig(Strict):
    enabled: bool = Field(
        False,
        description="Read lines from standard input (as `log-capturer run --stdin` does); at end of "
        "input the agent drains and exits.",
    )
    source_id: str = Field("stdin", min_length=1, description="source_id of the records.")
    labels: dict[str, str] = Field(default_factory=dict, description="Static labels of stdin records.")
    pipeline: str = Field("", description="Processing pipeline for stdin lines.")
    max_line_bytes: int = Field(
        1 << 20, ge=256, description="Longest line kept whole; longer ones are truncated and marked."
    )


#: The members of an HTTP ingest record that are the agent's own (never message, time or level).
HTTP_RECORD_MEMBERS = ("source_type", "source_id", "labels", "fields")


def _key_list(value: Any) -> Any:
    """One key, or a list of keys tried in order."""
    return [value] if isinstance(value, str) else value


KeyList = Annotated[
    list[Annotated[str, Field(min_length=1)]], BeforeValidator(_key_list), Field(min_length=1)
]


class HttpIngestConfig(Strict):
    enabled: bool = Field(
        True,
        description="Accept records on POST /api/v1/logs of the API server (server.port): JSON (one "
        "object or an array of objects), NDJSON or msgpack (a stream of maps, or Fluent Bit's "
        "[time, record] events), chosen by Content-Type, gzip bodies too. Each record is "
        "{message, level, source_type, source_id, labels, timestamp, fields}; see message_key, "
        "timestamp_key and level_key for the shapes of other clients.",
    )
    message_key: KeyList = Field(
        default_factory=lambda: ["message", "log", "msg"],
        description="Record member(s) holding the message, tried in order (a key or a list): "
        "'message' (Vector, Logstash), 'log' (Fluent Bit, Docker), 'msg' (Bunyan, Pino). One trailing "
        "newline is removed. A record with none of them is rejected (to the DLQ, see the README).",
    )
    timestamp_key: KeyList = Field(
        default_factory=lambda: ["timestamp", "@timestamp", "date", "time"],
        description="Record member(s) holding the event time, tried in order: RFC 3339 text, or a "
        "number of seconds since the epoch (fractions kept; Fluent Bit's 'date'), of milliseconds, "
        "microseconds or nanoseconds (told apart by size). The first that parses is the record "
        "timestamp; one that does not stays in fields. Else a msgpack event's own time, else the "
        "time received.",
    )
    level_key: KeyList = Field(
        default_factory=lambda: ["level", "severity"],
        description="Record member(s) holding the level, tried in order: a name (WARNING -> warn), a "
        "syslog severity 0-7 (0-1 fatal, 2 critical, 3 error, 4 warn, 5-6 info, 7 debug) or a "
        "Bunyan/Pino number (10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal). A value that "
        "is none of these stays in fields and the level is detected from the message.",
    )
    empty_messages: Literal["dlq", "skip"] = Field(
        "dlq",
        description="Records whose message is empty or only white space: 'dlq' parks them in the "
        "local DLQ like other rejected records; 'skip' drops them. Both are counted in "
        "http_ingest_records_rejected_total{reason='empty_message'} and do not fail the request.",
    )
    max_body_bytes: int = Field(
        10 << 20, ge=1024, le=1 << 30, description="Largest request body; larger ones get 413."
    )
    source_type: str = Field("api", min_length=1, description="source_type of records that give none.")
    source_id: str = Field("http", min_length=1, description="source_id of records that give none.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to every record (a record's own labels win)."
    )
    pipeline: str = Field("", description="Processing pipeline for ingested records.")
    queue_timeout: Duration = Field(
        0.5,
        description="How long a request waits for room in the dispatcher queue before it is "
        "refused with 429 (the client should retry later).",
    )
    acknowledgements: bool = Field(
        True,
        description="Answer 200 only once every record was acknowledged by the sinks (delivered or "
        "parked in the DLQ); false answers as soon as the records are queued.",
    )
    ack_timeout: Duration = Field(
        30.0,
        description="With acknowledgements, how long a request waits for them; then 503 (the "
        "records may still arrive: resending them is at-least-once).",
    )

    @model_validator(mode="after")
    def _check(self) -> HttpIngestConfig:
        taken: dict[str, str] = {k: "a record member of its own" for k in HTTP_RECORD_MEMBERS}
        for name in ("message_key", "timestamp_key", "level_key"):
            for key in getattr(self, name):
                if key in taken:
                    raise ValueError(f"{name}: {key!r} is already {taken[key]}; choose another key")
                taken[key] = f"in {name}"
        return self


class ContainerMonitorConfig(Strict):
    enabled: bool = Field(False, description="Follow the logs of Docker containers (json-file driver).")
    socket_path: str = Field(
        "unix:///var/run/docker.sock",
        description="Docker Engine API socket, used (when present) for container events so new "
        "containers are picked up at once ('' = do not use it). Discovery itself reads "
        "containers_directory and works without a Docker daemon.",
    )
    containers_directory: str = Field(
        "/var/lib/docker/containers",
        description="Docker's containers directory: <id>/config.v2.json (name, image, labels) and "
        "<id>/<id>-json.log.",
    )
    include_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Follow only containers that have all these labels with these values "
        "(a value of '*' accepts any value).",
    )
    exclude_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Never follow containers that have any of these labels with these values "
        "('*' = any value).",
    )
    include_names: list[str] = Field(
        default_factory=list,
        description="Follow only containers whose name matches one of these glob patterns (empty = all).",
    )
    exclude_names: list[str] = Field(
        default_factory=list,
        description="Never follow containers whose name matches one of these glob patterns.",
    )
    include_stdout: bool = Field(True, description="Ship lines the containers wrote to stdout.")
    include_stderr: bool = Field(True, description="Ship lines the containers wrote to stderr.")
    read_from: Literal["beginning", "end"] = Field(
        "beginning",
        description="Where to start in the log of a container found at start-up with no saved "
        "position. Containers that start later are read from their first line.",
    )
    rescan_interval: Duration = Field(
        10.0,
        description="How often containers_directory is scanned for containers that came or went "
        "(events from the socket trigger a scan at once).",
    )
    reconnect_interval: Duration = Field(
        30.0, description="Wait before reconnecting to the Docker socket after it failed or was absent."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Static labels added to every container record."
    )
    multiline: MultilineConfig = Field(default_factory=MultilineConfig)


class KubernetesConfig(Strict):
    enabled: bool = Field(
        False, description="Follow Kubernetes pod logs written by the container runtime in CRI format."
    )
    pods_directory: str = Field(
        "/var/log/pods",
        description="Where the kubelet keeps pod logs: <namespace>_<pod>_<uid>/<container>/<n>.log.",
    )
    include_namespaces: list[str] = Field(
        default_factory=list, description="Glob patterns of namespaces to follow (empty = all)."
    )
    exclude_namespaces: list[str] = Field(
        default_factory=list, description="Glob patterns of namespaces never followed."
    )
    read_from: Literal["beginning", "end"] = Field(
        "beginning",
        description="Where to start in a log found at start-up with no saved position. Logs that "
        "appear later are read from their first line.",
    )
    rescan_interval: Duration = Field(5.0, description="How often pods_directory is scanned.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Static labels added to every pod record."
    )
    multiline: MultilineConfig = Field(default_factory=MultilineConfig)


# --- dispatcher and reliability -------------------------------------------------------------


class ReprocessingConfig(Strict):
    enabled: bool = Field(
        True,
        description="Replay parked DLQ entries to their topic automatically, while the Kafka sink is "
        "healthy (circuit breaker closed, a broker reachable).",
    )
    interval: Duration = Field(300.0, description="How often the DLQ is checked for entries due.")
    max_retries: int = Field(
        3,
        ge=0,
        description="Automatic replays of one entry; after that it stays parked until replayed by hand "
        "(`log-capturer dlq replay`, which replays every entry, or POST /dlq/reprocess?all=true) or purged.",
    )
    initial_delay: Duration = Field(
        120.0, description="Delay between parking an entry and its first replay (next_reprocess_time)."
    )
    delay_multiplier: float = Field(
        2.0, ge=1.0, description="After a failed replay the delay is multiplied by this (exponential)."
    )
    max_delay: Duration = Field(1800.0, description="Cap on the delay between two replays of one entry.")
    batch_size: int = Field(
        50,
        ge=1,
        le=100_000,
        description="Entries replayed per batch. A round goes on with the next batch while every "
        "record of the last one was delivered (a recovered Kafka drains the store quickly).",
    )
    timeout: Duration = Field(
        30.0, description="How long one batch waits for Kafka's acknowledgements; unacknowledged = failed."
    )
    min_entry_age: Duration = Field(120.0, description="Entries younger than this are not replayed.")


class DispatcherDLQConfig(Strict):
    enabled: bool = Field(
        True,
        description="The local dead-letter store: records that cannot be delivered (oversize, rejected "
        "permanently with no DLQ topic, timed out with send_on_timeout, overflow) are parked here "
        "durably (fsync before they count as acknowledged) and replayed later. Disabled: such records "
        "are retried and their lines stay unacknowledged; nothing is dropped.",
    )
    directory: str = Field("./data/dlq", description="Directory of the local DLQ store.")
    max_size_mb: int = Field(100, ge=1, description="Largest total size of the store's segment files (MiB).")
    max_files: int = Field(
        10,
        ge=1,
        description="Most segment files; a segment holds up to max_size_mb / max_files MiB of entries.",
    )
    retention_days: int = Field(
        7,
        ge=1,
        description="Entries parked longer ago than this are deleted (counted in "
        "dlq_entries_removed_total{reason='expired'}).",
    )
    when_full: Literal["backpressure", "drop_oldest"] = Field(
        "backpressure",
        description="When max_size_mb or max_files is reached: 'backpressure' refuses new entries, so "
        "the lines wait in the sources (nothing is dropped; /health turns unhealthy); 'drop_oldest' "
        "deletes the oldest segment to make room (those entries are lost, counted in "
        "dlq_entries_removed_total{reason='dropped_full'}).",
    )
    reprocessing_config: ReprocessingConfig = Field(default_factory=ReprocessingConfig)


class DispatcherConfig(Strict):
    queue_size: int = Field(
        50000, ge=1, description="Capacity of the dispatcher queue, in lines; sources wait when it is full."
    )
    queue_max_bytes: int = Field(
        64 << 20,
        ge=1 << 20,
        description="Capacity of the dispatcher queue in bytes of line text; sources also wait when "
        "it is reached (bounds memory when lines are long).",
    )
    worker_count: int = Field(
        2,
        ge=1,
        le=64,
        description="Dispatch threads. Any thread takes any source's lines, but one source is "
        "served by one thread at a time, so its lines keep their order. One Python process gains "
        "little beyond 2.",
    )
    batch_size: int = Field(500, ge=1, description="Most lines handed to the sinks in one call.")
    batch_timeout: Duration = Field(
        10.0, description="Longest a partial batch waits for more lines (see flush_on_idle)."
    )
    flush_on_idle: bool = Field(
        True,
        description="Hand a partial batch to the sinks as soon as the queue is empty instead of "
        "waiting up to batch_timeout. Keeps latency low at low rates.",
    )
    max_retries: int = Field(
        3,
        ge=0,
        description="Retries of a sink call that raised (a bug, not a delivery problem: sinks retry "
        "deliveries themselves) before its lines are parked in the DLQ with reason all_sinks_failed.",
    )
    retry_base_delay: Duration = Field(
        5.0, description="Wait before the first such retry; doubles per attempt."
    )
    drain_timeout: Duration = Field(
        30.0,
        description="On shutdown, how long to wait for in-flight lines to be acknowledged. "
        "Lines not acknowledged by then are not checkpointed and are read again on restart.",
    )
    dlq_config: DispatcherDLQConfig = Field(default_factory=DispatcherDLQConfig)


# --- Kafka sink -----------------------------------------------------------------------------


class PartitioningConfig(Strict):
    enabled: bool = Field(True, description="Key messages so that one key stays on one partition.")
    strategy: Literal["hash", "round-robin", "random", "manual"] = Field(
        "hash",
        description="hash: murmur2 of the key, as Java clients do; round-robin and random ignore "
        "the key for placement; manual: the key_field value is the partition number.",
    )
    key_field: str = Field(
        "tenant_id",
        description="Label or parsed field whose value is the message key (falls back to source_id).",
    )


class AuthConfig(Strict):
    enabled: bool = Field(False, description="Authenticate with SASL.")
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-256", description="SASL mechanism."
    )
    username: str = Field("", description="SASL user (KAFKA_USERNAME overrides).")
    password: SecretStr = Field(
        SecretStr(""), description="SASL password (KAFKA_PASSWORD overrides). Never logged."
    )

    @model_validator(mode="after")
    def _check(self) -> AuthConfig:
        if self.enabled and not self.username:
            raise ValueError("auth is enabled but username is empty; set it or KAFKA_USERNAME")
        if self.enabled and not self.password.get_secret_value():
            raise ValueError("auth is enabled but password is empty; set it or KAFKA_PASSWORD")
        return self


class TLSConfig(Strict):
    enabled: bool = Field(False, description="Connect with TLS.")
    verify_certificate: bool = Field(True, description="Verify the broker certificate and host name.")
    ca_file: str = Field("", description="PEM file of the CA that signed the broker certificate.")
    cert_file: str = Field("", description="Client certificate (PEM) for mutual TLS.")
    key_file: str = Field("", description="Client private key (PEM) for mutual TLS.")

    @model_validator(mode="after")
    def _check(self) -> TLSConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together for mutual TLS; set both or neither")
        return self


class KafkaDLQConfig(Strict):
    enabled: bool = Field(
        True,
        description="The sink's dead-letter handling: the DLQ topic (send_on_error) and parking "
        "what timed out (send_on_timeout). False turns both off: records that time out are re-sent "
        "in place, and records Kafka rejects permanently go to the local store "
        "(dispatcher.dlq_config), the agent's last resort, never dropped.",
    )
    topic: str = Field("logs-dlq", min_length=1, description="The DLQ topic.")
    send_on_error: bool = Field(
        True,
        description="Records Kafka rejects permanently go to the DLQ topic (else straight to the "
        "local store).",
    )
    send_on_timeout: bool = Field(
        True,
        description="Records not delivered within the sink's 'timeout' are parked in the local store "
        "(and replayed by reprocessing) instead of being re-sent at once. False (or enabled: false) "
        "keeps re-sending them in place, in order, for as long as it takes.",
    )


class BackpressureConfig(Strict):
    enabled: bool = Field(
        True,
        description="React to the sink's queue filling up. Utilization = records the sink holds "
        "unacknowledged (producer queue, in flight, waiting for a retry) / queue_size, or their bytes "
        "/ queue_max_bytes, whichever is higher.",
    )
    queue_warning_threshold: float = Field(0.75, gt=0, le=1, description="Log a warning and count the event.")
    queue_critical_threshold: float = Field(
        0.90,
        gt=0,
        le=1,
        description="Slow the sources down: from this level on the sources are held (files stay on "
        "disk, TCP syslog is slowed, HTTP ingest answers 429) until there is room; lines already "
        "queued in the dispatcher are still produced, up to the emergency level.",
    )
    queue_emergency_threshold: float = Field(
        0.95,
        gt=0,
        le=1,
        description="A chunk of lines (one read of a file: up to files_config.read_buffer_bytes) is "
        "produced only if the queue stays within this level with it, or is empty; otherwise it "
        "waits. If the sink is also stalled (nothing acknowledged for 'timeout'), the waiting lines "
        "overflow to the local DLQ (reason 'backpressure'), are acknowledged, and are replayed once "
        "Kafka recovers. A sink that is merely saturated (acknowledgements keep coming) never "
        "overflows. 1.0 turns the overflow off: lines wait at the queue's capacity.",
    )
    timeout_escalation: bool = Field(
        True,
        description="Lines held below the emergency level (sources held at the critical level, or "
        "lines waiting for an open circuit breaker) longer than the sink's 'timeout' while it was "
        "stalled overflow to the DLQ as well, so a long outage cannot hold the sources until rotated "
        "files are deleted. For an outage to hold every line in order, with nothing in the DLQ, set "
        "this to false, queue_emergency_threshold to 1.0 and dlq_config.send_on_timeout to false "
        "(files must then outlive the outage).",
    )

    @model_validator(mode="after")
    def _order(self) -> BackpressureConfig:
        if not (
            self.queue_warning_threshold <= self.queue_critical_threshold <= self.queue_emergency_threshold
        ):
            raise ValueError(
                "thresholds must satisfy queue_warning_threshold <= queue_critical_threshold "
                "<= queue_emergency_threshold"
            )
        return self


class CircuitBreakerConfig(Strict):
    enabled: bool = Field(True, description="Stop sending while Kafka keeps failing.")
    failure_threshold: int = Field(
        10,
        ge=1,
        description="Consecutive failures that open the breaker. A failure is a chunk of records "
        "whose delivery failed with a retriable error or timed out, or one second during which no "
        "broker was reachable while records waited. A delivered chunk resets the count.",
    )
    success_threshold: int = Field(
        2, ge=1, description="Successful trial calls in half-open state that close the breaker."
    )
    timeout: Duration = Field(
        60.0, description="How long the breaker stays open before it lets trial calls through (half-open)."
    )
    half_open_max_calls: int = Field(
        10,
        ge=1,
        description=(
            "Most trial calls while half-open: chunks, retried or replayed records, or, while the "
            "sink has nothing to send, a metadata request once a second."
        ),
    )
    open_action: Literal["wait", "dlq"] = Field(
        "wait",
        description="What happens to new lines while the breaker is open: 'wait' holds them in the "
        "sources (backpressure; see backpressure_config.timeout_escalation), 'dlq' parks them in the "
        "local DLQ at once, to be replayed when Kafka recovers. Never dropped.",
    )

    @model_validator(mode="after")
    def _check(self) -> CircuitBreakerConfig:
        if self.success_threshold > self.half_open_max_calls:
            raise ValueError(
                f"success_threshold ({self.success_threshold}) cannot exceed half_open_max_calls "
                f"({self.half_open_max_calls}): the breaker could never close"
            )
        return self


class PriorityRoutingConfig(Strict):
    enabled: bool = Field(True, description="Route records to topics by level.")
    high_topic: str = Field("logs-high-priority", description="ERROR, FATAL, CRITICAL.")
    normal_topic: str = Field("logs-normal-priority", description="WARN, INFO.")
    low_topic: str = Field("logs-low-priority", description="DEBUG, TRACE.")


_BROKER = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]+)$")


def _check_broker(value: str) -> str:
    """A bootstrap broker is host:port (an IPv6 host in brackets), the port 1-65535."""
    m = _BROKER.match(value.strip())
    if m and 1 <= int(m.group("port")) <= 65535:
        return value.strip()
    if "," in value:
        why = "several addresses in one item: write one broker per list item,"
    elif m:
        why = "the port is outside 1-65535: write host:port,"
    elif value.strip().startswith(":"):
        why = "no host: write host:port,"
    elif ":" not in value or value.strip().endswith(":"):
        why = "no port: write host:port,"
    else:
        why = "not host:port: write host:port,"
    raise ValueError(f"{why} such as 'kafka-1:9092' ('[::1]:9092' for an IPv6 address)")


Broker = Annotated[str, AfterValidator(_check_broker)]

#: compression_level ranges that librdkafka accepts for each codec that has levels.
COMPRESSION_LEVELS = {"zstd": (1, 12), "gzip": (0, 9), "lz4": (0, 12)}


class KafkaSinkConfig(Strict):
    enabled: bool = Field(False, description="Ship records to Kafka.")
    brokers: list[Broker] = Field(
        default_factory=lambda: ["127.0.0.1:9092"],
        min_length=1,
        description="Bootstrap brokers, host:port with a port 1-65535 (an IPv6 host in brackets: "
        "'[::1]:9092'). KAFKA_BROKERS overrides, comma-separated.",
    )
    topic: str = Field("logs", min_length=1, description="Topic for records with no or unknown level.")
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "snappy", description="Batch compression codec (KAFKA_COMPRESSION overrides)."
    )
    compression_level: int | None = Field(
        None,
        description="Level of the codec (librdkafka compression.level): zstd 1-12, gzip 0-9, lz4 0-12; "
        "higher compresses more and costs more CPU. Unset: the codec's default (zstd 3). The shipped "
        "configs/config.yaml sets zstd 1: about 4 % more bytes than 3 for about a fifth less CPU "
        "in librdkafka's compressing thread (BENCHMARKS.md). snappy and none have no levels.",
    )
    max_message_bytes: int = Field(
        1048576, ge=1024, le=1_000_000_000, description="Largest record; larger ones go to the DLQ."
    )
    required_acks: Literal[0, 1, -1] = Field(
        1,
        description="0 = none: the broker confirms nothing, so a line is checkpointed once sent and "
        "lost if the broker never wrote it (`validate` and the agent's start-up log warn). 1 = the "
        "partition leader wrote it. -1 = every in-sync replica wrote it (enables idempotence): the "
        "setting for no loss.",
    )
    batch_size: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Most records per partition batch (librdkafka batch.num.messages; KAFKA_BATCH_SIZE "
        "overrides). A full batch leaves at once.",
    )
    batch_timeout: Duration = Field(
        5.0,
        description="Longest a record waits for its batch to fill (librdkafka linger.ms). With "
        "adaptive_batching, records leave sooner when the load is low.",
    )
    queue_size: int = Field(
        50000, ge=1, le=10_000_000, description="Records the producer may hold unacknowledged."
    )
    queue_max_bytes: int = Field(
        64 << 20,
        ge=1 << 20,
        le=2 << 30,
        description="Bytes of records the producer may hold unacknowledged (librdkafka "
        "queue.buffering.max.kbytes); with queue_size, it bounds the sink's memory.",
    )
    timeout: Duration = Field(
        30.0,
        description="How long a record may take to be delivered (librdkafka message.timeout.ms). With "
        "dlq_config.send_on_timeout, a record not delivered in time is parked in the local DLQ and "
        "replayed later; without it, librdkafka keeps retrying it in order, with no time limit. Also "
        "the time after which a sink that acknowledges nothing counts as stalled (backpressure).",
    )
    retry_max: int = Field(3, ge=0, description="Producer retries of one request (librdkafka retries).")
    partitioning: PartitioningConfig = Field(default_factory=PartitioningConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    tls: TLSConfig = Field(default_factory=TLSConfig)
    dlq_config: KafkaDLQConfig = Field(default_factory=KafkaDLQConfig)
    backpressure_config: BackpressureConfig = Field(default_factory=BackpressureConfig)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    priority_routing: PriorityRoutingConfig = Field(default_factory=PriorityRoutingConfig)
    headers: list[Literal["level", "source_type", "source_id", "host"]] = Field(
        default_factory=list,
        description="Kafka headers added to every record so consumers can route without parsing "
        "the body (e.g. [level, source_type, host]). Off by default.",
    )
    adaptive_batching: bool = Field(
        True,
        description="Smart batching: the batch size follows the arrival rate, within batch_size and "
        "batch_timeout. When the dispatcher has handed over all it had, the records waiting in the "
        "producer are sent at once, unless the previous such send is still unacknowledged: then the "
        "lines that arrive gather until it is (as in Nagle's algorithm). A trickle leaves at once in "
        "small batches (one round trip instead of batch_timeout); under load the dispatcher never "
        "runs empty, and batches fill to batch_size or leave after batch_timeout, as with this off. "
        "Off: every batch waits for batch_size records or batch_timeout.",
    )
    native_producer: bool = Field(
        True,
        description="Send chunks through the agent's own librdkafka producer (the librdkafka that "
        "confluent-kafka ships), which counts the delivery reports of a chunk in C: every record "
        "still needs its own acknowledgement before the checkpoint moves, at about half the CPU "
        "per record. Chunks with headers, retries, the DLQ topic, replays and metadata requests use "
        "confluent-kafka's producer either way. false: confluent-kafka for everything.",
    )
    librdkafka_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Advanced: extra librdkafka producer properties. Properties that another key "
        "of this section sets cannot be overridden here.",
    )

    @model_validator(mode="after")
    def _check(self) -> KafkaSinkConfig:
        if self.batch_timeout > 900:
            raise ValueError("batch_timeout can be at most 900s (librdkafka linger.ms limit)")
        if self.timeout < 1:
            raise ValueError("timeout must be at least 1s")
        if self.compression_level is not None:
            low, high = COMPRESSION_LEVELS.get(self.compression, (0, -1))
            if high < 0:
                raise ValueError(
                    f"compression_level does not apply to compression: {self.compression}; remove it"
                )
            if not low <= self.compression_level <= high:
                raise ValueError(
                    f"compression_level {self.compression_level} is out of range for "
                    f"{self.compression}: use {low} to {high}"
                )
        if self.timeout <= self.batch_timeout:
            raise ValueError(
                f"timeout ({self.timeout:g}s) must be longer than batch_timeout "
                f"({self.batch_timeout:g}s): a record must be able to wait for its batch and still be sent"
            )
        from log_capturer.sinks.kafka.config import MANAGED_PROPERTIES

        taken = sorted(set(self.librdkafka_options) & MANAGED_PROPERTIES)
        if taken:
            raise ValueError(
                f"librdkafka_options may not set {', '.join(taken)}: use the matching sinks.kafka key "
                "(see docs/kafka-sink.md)"
            )
        return self


class SinksConfig(Strict):
    kafka: KafkaSinkConfig = Field(default_factory=KafkaSinkConfig)


# --- positions, processing ------------------------------------------------------------------


class PositionsConfig(Strict):
    enabled: bool = Field(True, description="Remember read positions across restarts.")
    directory: str = Field("./data/positions", description="Directory of the position files.")
    flush_interval: Duration = Field(
        10.0, description="How often acknowledged positions are written (and always on shutdown)."
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


class Config(Strict):
    app: AppConfig = Field(default_factory=AppConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    files_config: FilesConfig = Field(default_factory=FilesConfig)
    syslog: SyslogConfig = Field(default_factory=SyslogConfig)
    stdin: StdinConfig = Field(default_factory=StdinConfig)
    http_ingest: HttpIngestConfig = Field(default_factory=HttpIngestConfig)
    container_monitor: ContainerMonitorConfig = Field(default_factory=ContainerMonitorConfig)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    dispatcher: DispatcherConfig = Field(default_factory=DispatcherConfig)
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    positions: PositionsConfig = Field(default_factory=PositionsConfig)
    processing: ProcessingConfig = Field(default_factory=ProcessingConfig)

    def ignored_settings(self) -> list[str]:
        """Settings accepted for compatibility that do nothing, each with what to do instead (warnings
        of ``validate`` and ``run``: not errors, so that an old config still starts the agent)."""
        notes = []
        if self.app.version is not None:
            notes.append(
                f"app.version ({self.app.version!r}) is deprecated and ignored: /health reports the "
                "agent's own version (log-capturer version); remove the key"
            )
        return notes

    def pipeline_names(self) -> dict[str, str]:
        """Every pipeline the config refers to: config key -> pipeline name."""
        refs = {
            "files_config.pipeline": self.files_config.pipeline,
            "syslog.pipeline": self.syslog.pipeline,
            "stdin.pipeline": self.stdin.pipeline,
            "http_ingest.pipeline": self.http_ingest.pipeline,
        }
        refs.update(
            {
                f"processing.source_type_pipelines.{t}": n
                for t, n in self.processing.source_type_pipelines.items()
            }
        )
        return {k: v for k, v in refs.items() if v}

    @model_validator(mode="after")
    def _stdin_is_one_stream(self) -> Config:
        if self.stdin.enabled and self.app.workers > 1:
            raise ValueError(
                "stdin.enabled needs app.workers: 1 (standard input is one stream, read by one "
                "process); set app.workers: 1 or turn stdin off"
            )
        return self

    @model_validator(mode="after")
    def _pipelines_need_processing(self) -> Config:
        if not self.processing.enabled and self.pipeline_names():
            key = next(iter(self.pipeline_names()))
            raise ValueError(
                f"{key} names a pipeline but processing is disabled; set processing.enabled: true "
                "and processing.pipelines_file"
            )
        return self
