"""Checkpoint files: versioned JSON, written to a temp file, fsynced, renamed.

One file per source kind (``files.json`` for the file source) in
``positions.directory``. Only acknowledged positions are ever written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)
VERSION = 1


class PositionStore:
    def __init__(self, directory: str | Path, name: str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / f"{name}.json"

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            raw = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError) as exc:
            # A damaged checkpoint must not stop the agent; it is kept aside for inspection.
            aside = self.path.with_suffix(".corrupt")
            log.error(
                "positions file %s is unreadable (%s); moved to %s, starting fresh", self.path, exc, aside
            )
            with contextlib.suppress(OSError):
                self.path.replace(aside)
            return {}
        if not isinstance(raw, dict) or raw.get("version") != VERSION:
            log.error("positions file %s has an unknown format; ignoring it", self.path)
            return {}
        entries = raw.get("positions", {})
        return entries if isinstance(entries, dict) else {}

    def save(self, entries: dict[str, dict[str, Any]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = orjson.dumps({"version": VERSION, "positions": entries}, option=orjson.OPT_INDENT_2)
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
