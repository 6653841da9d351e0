"""Checkpoint files: versioned JSON, written to a temp file, fsynced, renamed.

One file per source kind (``files.json`` for the file source,
``containers.json`` for container logs) in ``positions.directory``. Only
acknowledged positions are ever written. A file written by an older version of
the agent is converted on load by the store's migrations; it is written back
in the current format at the next save.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

Entries = dict[str, dict[str, Any]]
Migration = Callable[[Entries], Entries]


class PositionStore:
    def __init__(
        self,
        directory: str | Path,
        name: str,
        version: int = 1,
        migrations: Mapping[int, Migration] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / f"{name}.json"
        self.version = version
        #: Older format version -> function converting its entries to the current format.
        self.migrations = dict(migrations or {})

    def load(self) -> dict[str, dict[str, Any]]:
        return self._load(keep_damaged=False)

    def peek(self) -> dict[str, dict[str, Any]]:
        """Load without side effects: a damaged file is ignored, never moved (another process's file)."""
        return self._load(keep_damaged=True)

    def _load(self, keep_damaged: bool) -> dict[str, dict[str, Any]]:
        try:
            raw = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError) as exc:
            if keep_damaged:
                log.warning("positions file %s is unreadable (%s); ignoring it", self.path, exc)
                return {}
            # A damaged checkpoint must not stop the agent; it is kept aside for inspection.
            aside = self.path.with_suffix(".corrupt")
            log.error(
                "positions file %s is unreadable (%s); moved to %s, starting fresh", self.path, exc, aside
            )
            with contextlib.suppress(OSError):
                self.path.replace(aside)
            return {}
        version = raw.get("version") if isinstance(raw, dict) else None
        entries = raw.get("positions", {}) if isinstance(raw, dict) else None
        if not isinstance(entries, dict) or (version != self.version and version not in self.migrations):
            log.error("positions file %s has an unknown format; ignoring it", self.path)
            return {}
        entries = {k: v for k, v in entries.items() if isinstance(k, str) and isinstance(v, dict)}
        if version != self.version:
            log.info(
                "positions file %s is in format version %s; converting it to version %s",
                self.path,
                version,
                self.version,
            )
            entries = self.migrations[version](entries)
        return entries

    def save(self, entries: dict[str, dict[str, Any]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = orjson.dumps({"version": self.version, "positions": entries}, option=orjson.OPT_INDENT_2)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
