"""Which worker follows which file: a hash of its ``source_id`` modulo N, kept while it is renamed.

A file is taken by the worker its ``source_id`` (the path it was first seen
at; the container id for container logs) hashes to, and stays with that
worker for as long as it is followed, whatever it is renamed to. Rotated
files keep their ``source_id``, so one file and its rotated generations are
read by one worker, in order, with one checkpoint chain.

Every worker searches the watched directories itself. When a file no worker
follows yet shows up, only the worker its path hashes to takes it, unless
another worker already follows it under an earlier name (a file renamed to
another watched name, ``app.log`` -> ``app-20260101.log``). Two things say
so, without any message between the workers:

- **claims**: each worker publishes the identities (device, inode) it follows
  in ``<positions.directory>/.workers/claims-<kind>-<index>.json`` after each
  rescan and each rename it sees;
- **saved positions** of the other workers, read at start-up, for as long as
  their owner has not published its claims yet (all workers start together).

A file already followed is never given up to another worker: a saved entry
always goes back to the worker of its ``source_id`` (see
:mod:`log_capturer.workers.positions`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from log_capturer.pipeline.sharding import stable_shard
from log_capturer.sources.file.identity import Fingerprint, read_head

log = logging.getLogger(__name__)

Key = tuple[int, int]
Entry = dict[str, Any]

#: Under positions.directory: the workers' claims (rewritten at every start by the supervisor).
CLAIMS_DIR = ".workers"


def shard_of(source_id: str, count: int) -> int:
    """The worker (0..count-1) of a source: a hash of its id, stable across runs and machines."""
    return stable_shard(source_id, count)


def worker_positions_name(kind: str, index: int) -> str:
    """Base name of worker ``index``'s positions file of ``kind`` (files, containers)."""
    return f"{kind}.worker-{index}"


def _key(entry: Entry) -> Key | None:
    dev, ino = entry.get("device"), entry.get("inode")
    if isinstance(dev, int) and isinstance(ino, int) and (dev, ino) != (0, 0):
        return dev, ino
    return None


class Shard:
    """Worker ``index`` of ``count``: what it takes, what it publishes, where its positions go."""

    def __init__(self, index: int, count: int, positions_directory: str | Path, kind: str) -> None:
        if not 0 <= index < count:
            raise ValueError(f"worker index {index} is not in 0..{count - 1}")
        self.index = index
        self.count = count
        self.kind = kind
        self.claims_dir = Path(positions_directory) / CLAIMS_DIR
        self.claims_path = self.claims_dir / f"claims-{kind}-{index}.json"
        #: Identities in other workers' saved positions: key -> (owner, entry).
        self._foreign: dict[Key, tuple[int, Entry]] = {}
        self._published: frozenset[Key] | None = None
        self._others: dict[int, tuple[int, frozenset[Key]]] = {}

    def owns(self, source_id: str) -> bool:
        return shard_of(source_id, self.count) == self.index

    @property
    def positions_name(self) -> str:
        return worker_positions_name(self.kind, self.index)

    def other_positions_names(self) -> list[str]:
        return [worker_positions_name(self.kind, j) for j in range(self.count) if j != self.index]

    def remember_foreign(self, entries: Iterable[Entry]) -> None:
        """Saved entries of other workers (their ``source_id`` hashes elsewhere): files not to take."""
        for entry in entries:
            sid = entry.get("source_id")
            key = _key(entry)
            if isinstance(sid, str) and key is not None and not self.owns(sid):
                self._foreign[key] = (shard_of(sid, self.count), entry)

    def admits(self, source_id: str, key: Key, path: str) -> bool:
        """A file this worker does not follow, at a watched ``path``: does this worker take it?"""
        if not self.owns(source_id):
            return False
        claims = self._claims()
        if any(key in keys for keys in claims.values()):
            return False  # another worker follows it under an earlier name
        foreign = self._foreign.get(key)
        if foreign is not None:
            owner, entry = foreign
            if owner in claims:
                del self._foreign[key]  # its owner says what it follows now: trust that
            elif _same_file(entry, key, path):
                return False
        return True

    def publish(self, keys: Iterable[Key]) -> None:
        """Write the identities this worker follows (when they changed) for the other workers."""
        now = frozenset(keys)
        if now == self._published:
            return
        data = orjson.dumps({"pid": os.getpid(), "keys": sorted(now)})
        try:
            self.claims_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.claims_path.name}.", dir=self.claims_dir)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.claims_path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("cannot publish the files this worker follows: %s", exc)
            return
        self._published = now

    def _claims(self) -> dict[int, frozenset[Key]]:
        """The other workers' published claims, by worker (re-read only when a file changed)."""
        out: dict[int, frozenset[Key]] = {}
        for j in range(self.count):
            if j == self.index:
                continue
            path = self.claims_dir / f"claims-{self.kind}-{j}.json"
            try:
                st = path.stat()
            except OSError:
                self._others.pop(j, None)
                continue
            cached = self._others.get(j)
            if cached is None or cached[0] != st.st_mtime_ns:
                try:
                    raw = orjson.loads(path.read_bytes())
                    keys = frozenset((int(d), int(i)) for d, i in raw.get("keys", []))
                except (OSError, ValueError, TypeError):
                    continue
                cached = self._others[j] = (st.st_mtime_ns, keys)
            out[j] = cached[1]
        return out


def _same_file(entry: Entry, key: Key, path: str) -> bool:
    """Whether the file at ``path`` is the one a saved entry describes (identity and first bytes)."""
    head = read_head(path)
    if head is None or (head[0], head[1]) != key:
        return False
    _, _, size, data = head
    fp = Fingerprint.from_entry(entry)
    if fp is None:
        offset = entry.get("offset", 0)
        return isinstance(offset, int) and offset <= size
    return fp.matches_prefix(data)
