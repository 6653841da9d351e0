"""Positions across worker counts: each saved entry goes to the worker of its ``source_id``.

With one process the file source keeps ``files.json`` and the container source
``containers.json``. Worker ``i`` of a multi-process agent keeps
``files.worker-<i>.json`` and ``containers.worker-<i>.json``, holding only the
entries of its own sources. Before any worker starts (and before a single
process starts), :func:`prepare_positions` reads every such file in
``positions.directory``, keeps the newest entry of each file identity (device +
inode; container id for containers) and writes each entry to the file of the
worker of its ``source_id`` (:func:`.shard.shard_of`) for the new N, then removes the files no worker
of this N reads. Going from 1 to N workers, from N to M, or back to 1, every
file resumes from its acknowledged position: nothing is read twice, nothing is
skipped.

The rewrite is crash-safe: the new files are written (atomically) before the
old ones are removed, and a file written later wins over an older one for the
same identity, so a crash in between leaves a state the next start reads right.

:func:`prepare_positions` also takes an exclusive lock on
``<positions.directory>/.agent.lock`` for the life of the process: two agents
sharing one positions directory would re-send or skip each other's lines.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from pathlib import Path
from typing import IO, Any

from log_capturer.config.schema import PositionsConfig
from log_capturer.sources.file.source import FORMAT as FILES_FORMAT
from log_capturer.sources.positions import PositionStore
from log_capturer.workers.shard import CLAIMS_DIR, shard_of, worker_positions_name

log = logging.getLogger(__name__)

Entry = dict[str, Any]

LOCK_NAME = ".agent.lock"

#: Positions kinds: (version, migrations) of their stores.
KINDS: dict[str, tuple[int, Any]] = {"files": FILES_FORMAT, "containers": (1, {})}


class PositionsBusy(RuntimeError):
    """Another agent holds the positions directory."""


def store_names(kind: str, count: int) -> list[str]:
    """The positions files (base names) the agent reads with ``count`` workers."""
    return [kind] if count == 1 else [worker_positions_name(kind, i) for i in range(count)]


def _existing(directory: Path, kind: str) -> list[Path]:
    paths = [directory / f"{kind}.json", *directory.glob(f"{kind}.worker-*.json")]
    found = [p for p in paths if p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _identity(kind: str, name: str, entry: Entry) -> tuple[Any, ...]:
    if kind == "containers":
        return ("container", name)
    dev, ino = entry.get("device"), entry.get("inode")
    if isinstance(dev, int) and isinstance(ino, int) and (dev, ino) != (0, 0):
        return ("file", dev, ino)
    return ("path", name)


def _owner(kind: str, name: str, entry: Entry, count: int) -> int:
    if count == 1:
        return 0
    sid = entry.get("source_id") if kind == "files" else name
    return shard_of(sid if isinstance(sid, str) and sid else name, count)


def rebalance(directory: str | Path, count: int) -> dict[str, int]:
    """Move every saved entry to the positions file of its worker for ``count`` workers.

    Returns how many entries each kind holds. Files already laid out for
    ``count`` are left untouched.
    """
    root = Path(directory)
    moved: dict[str, int] = {}
    for kind, (version, migrations) in KINDS.items():
        existing = _existing(root, kind)
        names = store_names(kind, count)
        merged: dict[tuple[Any, ...], tuple[str, Entry, str]] = {}
        in_place = True
        for path in existing:
            base = path.name.removesuffix(".json")
            entries = PositionStore(root, base, version, migrations).load()
            for name, entry in entries.items():
                merged[_identity(kind, name, entry)] = (name, entry, base)
        layout: dict[str, dict[str, Entry]] = {n: {} for n in names}
        for name, entry, was_in in merged.values():
            target = names[_owner(kind, name, entry, count)]
            layout[target][name] = entry
            in_place &= was_in == target
        present = {p.name.removesuffix(".json") for p in existing}
        moved[kind] = len(merged)
        if in_place and present <= set(names):
            continue
        for name in names:
            PositionStore(root, name, version, migrations).save(layout[name])
        for path in existing:
            if path.name.removesuffix(".json") not in names:
                path.unlink()
        log.info(
            "positions laid out for %d worker(s)",
            count,
            extra={"kind": kind, "entries": len(merged), "files": [f"{n}.json" for n in names]},
        )
    return moved


def lock_positions(directory: str | Path, wait: float = 0.0) -> IO[str]:
    """Hold ``.agent.lock`` in the positions directory; :class:`PositionsBusy` if another agent
    still does after ``wait`` seconds (the workers of an agent whose supervisor died finish their
    drain first)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    f = (root / LOCK_NAME).open("a+")
    deadline = time.monotonic() + wait
    noted = False
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            if time.monotonic() >= deadline:
                f.close()
                raise PositionsBusy(
                    f"another agent (pid {holder}, or its workers) uses positions.directory {root}; "
                    "stop it, or give this one its own positions.directory"
                ) from None
            if not noted:
                log.warning(
                    "positions directory in use by another agent; waiting for it to stop",
                    extra={"directory": str(root), "holder_pid": holder, "wait_s": wait},
                )
                noted = True
            time.sleep(0.2)
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def prepare_positions(positions: PositionsConfig, count: int, wait: float = 0.0) -> IO[str] | None:
    """Before the agent starts: lock the directory (waiting up to ``wait`` s for another agent),
    lay the positions out for ``count`` workers, forget the claims of earlier workers. Returns the
    lock (keep it open while the agent runs)."""
    if not positions.enabled:
        return None
    lock = lock_positions(positions.directory, wait)
    try:
        rebalance(positions.directory, count)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(Path(positions.directory) / CLAIMS_DIR)
    except BaseException:
        lock.close()
        raise
    return lock
