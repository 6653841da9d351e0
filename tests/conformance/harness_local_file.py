"""The local file sink's harness: the file system (each test's own directory) is its server.

Records go to ``conf-{level}.log`` as JSON lines. Faults are the file system's own: the directory
and its files made immutable (``chattr +i``: even root cannot write, create or delete there) and
mutable again; a file name taken by a directory (``conf-fatal.log``), which refuses the records
bound for it (their level is fatal) for their own sake with EISDIR. A file system has no pause: to
saturate the sink, the directory refuses writes as when it is away, and the engine retries (the
scenario's timeout is longer than the wait, so nothing is parked); records pile up unacknowledged
the same way.

Order: a file's records are written in the order they were handed over, but records that failed
are written again in their back-off's order, so after a failure the order of an origin's lines
is not promised (``none``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conformance.harness import DeadLetter, Order, Received, poll_received
from tests.support import _merge

#: The file the refused records are bound for (refused_line's level is fatal).
REFUSED_FILE = "conf-fatal.log"


class LocalFileHarness:
    name = "local_file"
    section = "local_file"
    order: Order = "none"
    refused_reason = "send_error"
    refused_text = "Is a directory"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._immutable: list[Path] = []

    def config(self, delivery: Mapping[str, Any] | None = None) -> dict[str, Any]:
        section: dict[str, Any] = {
            "enabled": True,
            "directory": str(self.directory),
            "filename_pattern": "conf-{level}.log",
            "output_format": "json",
        }
        _merge(section, dict(delivery or {}))
        return section

    def _files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted(p for p in self.directory.glob("conf-*.log") if p.is_file())

    def _read(self) -> list[Received]:
        out = []
        for p in self._files():
            for n, line in enumerate(p.read_bytes().splitlines()):
                doc = orjson.loads(line)
                out.append(Received(doc["message"], doc["source_id"], p.name, n))
        return out

    def received(self, expected: int, timeout: float = 60.0) -> list[Received]:
        return poll_received(self._read, expected, timeout)

    def dead_letters(self) -> list[DeadLetter]:
        return []  # no dead-letter output of its own: refused records are in the local store

    def refuse(self) -> None:
        (self.directory / REFUSED_FILE).mkdir(parents=True)

    def refused_line(self, i: int) -> str:
        return f"FATAL refused by the file system {i}"

    def make_unavailable(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        paths = [self.directory, *self.directory.iterdir()]
        subprocess.run(["chattr", "+i", *map(str, paths)], check=True)
        self._immutable += paths

    def make_available(self) -> None:
        if self._immutable:
            subprocess.run(["chattr", "-i", *map(str, self._immutable)], check=True)
            self._immutable = []

    def saturate(self) -> None:
        self.make_unavailable()

    def release(self) -> None:
        self.make_available()


def open_harness(request: pytest.FixtureRequest, tmp: Path) -> Iterator[LocalFileHarness]:
    harness = LocalFileHarness(tmp / "files")
    try:
        yield harness
    finally:
        harness.make_available()
