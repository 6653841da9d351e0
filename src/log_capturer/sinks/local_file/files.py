"""What the local file sink writes and where, without touching a file: names from
``filename_pattern``, text lines from ``text_format``, rotated names, which closed files retention
deletes. The service (:mod:`.service`) does the writing."""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from log_capturer.sinks.local_file.config import LocalFileSinkConfig, TextFormatConfig

#: Characters kept as they are in {source_type} and {source_id}; the others become '_'.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: Longest {source_type} / {source_id} value in a name (a file name is at most 255 bytes).
MAX_PART = 96
#: The suffix a size rotation adds: '.' and the UTC time, to the microsecond.
ROTATED = r"\.\d{8}T\d{6}\.\d{6}"


def safe_part(value: str) -> str:
    """A placeholder's value as part of a file name: no '/', no leading dot, bounded length."""
    out = _UNSAFE.sub("_", value)[:MAX_PART].lstrip(".")
    return out or "_"


@dataclass(frozen=True)
class Namer:
    """Renders ``filename_pattern`` for a record (its source and level) at a time."""

    pattern: str
    #: ``{worker}``: the agent's worker number (``app.workers``), "0" with one process.
    worker: str = "0"

    @property
    def timed(self) -> bool:
        """Whether names change with time ({date}, {hour}...)."""
        return any(f"{{{p}}}" in self.pattern for p in ("date", "hour", "year", "month", "day"))

    def name(self, source_type: str, source_id: str, level: str, now: float) -> str:
        t = time.gmtime(now)
        values = {
            "date": time.strftime("%Y-%m-%d", t),
            "hour": f"{t.tm_hour:02d}",
            "year": f"{t.tm_year:04d}",
            "month": f"{t.tm_mon:02d}",
            "day": f"{t.tm_mday:02d}",
            "source_type": safe_part(source_type),
            "source_id": safe_part(source_id),
            "level": safe_part(level or "unknown"),
            "worker": self.worker,
        }
        return re.sub(r"\{([a-z_]+)\}", lambda m: values[m.group(1)], self.pattern)

    def matcher(self) -> re.Pattern[str]:
        """Every name this pattern may produce (in this worker), rotated (a size rotation's
        suffix) or compressed."""
        return re.compile(f"^{self._body({'worker': self.worker})}(?:{ROTATED})?(?:\\.gz)?$")

    def current(self, now: float) -> re.Pattern[str]:
        """The names of files that may still be written at ``now`` (their time placeholders are
        now's): never closed, so never deleted by retention."""
        t = time.gmtime(now)
        times = {
            "date": time.strftime("%Y-%m-%d", t),
            "hour": f"{t.tm_hour:02d}",
            "year": f"{t.tm_year:04d}",
            "month": f"{t.tm_mon:02d}",
            "day": f"{t.tm_mday:02d}",
            "worker": self.worker,
        }
        return re.compile(f"^{self._body(times)}$")

    def _body(self, known: dict[str, str]) -> str:
        parts = re.split(r"(\{[a-z_]+\})", self.pattern)
        return "".join(
            (re.escape(known[p[1:-1]]) if p[1:-1] in known else ".+?") if p.startswith("{") else re.escape(p)
            for p in parts
        )


def rotated_name(name: str, now: float) -> str:
    """The name a file takes when it is rotated by size: ``<name>.<YYYYmmddTHHMMSS.ffffff>``."""
    micro = int(now * 1_000_000) % 1_000_000
    return f"{name}.{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}.{micro:06d}"


def is_size_rotated(name: str) -> bool:
    return re.search(f"{ROTATED}$", name) is not None


def strftime_of(rfc3339: str, fmt: str) -> str:
    """An RFC 3339 UTC timestamp (``2026-12-06T03:31:56.123456789Z``) in ``fmt`` (strftime; %f:
    the microseconds)."""
    try:
        secs = calendar.timegm(time.strptime(rfc3339[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return rfc3339
    frac = rfc3339[20:26] if len(rfc3339) > 20 and rfc3339[19] == "." else "000000"
    return time.strftime(fmt.replace("%f", frac.ljust(6, "0")), time.gmtime(secs))


class TextFormatter:
    """One record as a line of text (``output_format: text``)."""

    def __init__(self, config: TextFormatConfig) -> None:
        self.config = config
        self.sep = config.field_separator

    def line(
        self,
        timestamp: str,
        level: str,
        source_type: str,
        source_id: str,
        labels: Mapping[str, object],
        message: str,
    ) -> str:
        cfg = self.config
        if cfg.raw_message_only:
            return message
        fields: list[str] = []
        if cfg.include_timestamp:
            fmt = cfg.timestamp_format
            fields.append(timestamp if fmt == "rfc3339" else strftime_of(timestamp, fmt))
        fields.append((level or "-").upper())
        fields.append(f"{source_type}/{source_id}")
        if cfg.include_labels and labels:
            fields.append(",".join(f"{k}={v}" for k, v in labels.items()))
        fields.append(message)
        return self.sep.join(fields)


def expired(files: list[tuple[str, float]], now: float, max_files: int, retention_days: int) -> list[str]:
    """Of the closed files (name, modification time), those retention deletes: last modified more
    than ``retention_days`` ago, and the oldest beyond the newest ``max_files``."""
    newest_first = sorted(files, key=lambda f: f[1], reverse=True)
    limit = now - retention_days * 86400
    return [name for i, (name, mtime) in enumerate(newest_first) if i >= max_files or mtime < limit]


def describe_sync(config: LocalFileSinkConfig) -> str:
    """The sync policy in words, for /health."""
    if not config.auto_sync:
        return "written (no fsync): survives the agent being killed, not a machine crash"
    if config.sync_interval <= 0:
        return "fsync per batch before acknowledging"
    return f"fsync every {config.sync_interval:g}s before acknowledging"
