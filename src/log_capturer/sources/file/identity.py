"""File identity: device + inode + a fingerprint of the first bytes.

Device and inode alone are not enough: a deleted file's inode is soon reused
by a new file, which must not inherit the old file's position. The
fingerprint is a hash of the first ``FINGERPRINT_BYTES`` bytes (fewer while
the file is smaller; ``length`` records how many were hashed, and it grows
with the file). An append-only file keeps its fingerprint forever; a file
truncated and rewritten (copytruncate) gets a new one; a copy of a file
(logrotate's ``copytruncate`` copy) has the same one, which is how the agent
finds the copy and continues there.

This module is the tailer's fingerprinter (Vector's ``fingerprinter``): what
a file *is* (:data:`Key`, :class:`Fingerprint`), and where a known file is
*now* (:func:`find_inode`, :func:`current_path`, :func:`open_listed`), for
files renamed by rotation.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

FINGERPRINT_BYTES = 1024

#: A file's identity while it exists: (device, inode).
Key = tuple[int, int]


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Fingerprint:
    digest: str
    length: int

    @classmethod
    def of(cls, fd: int, size: int | None = None) -> Fingerprint:
        """Fingerprint of an open file (its first bytes, up to ``FINGERPRINT_BYTES``)."""
        if size is None:
            size = os.fstat(fd).st_size
        data = os.pread(fd, min(size, FINGERPRINT_BYTES), 0)
        return cls(_digest(data), len(data))

    @classmethod
    def of_head(cls, head: bytes) -> Fingerprint:
        """Fingerprint of a file whose first bytes (up to ``FINGERPRINT_BYTES``) are ``head``."""
        return cls(_digest(head[:FINGERPRINT_BYTES]), min(len(head), FINGERPRINT_BYTES))

    def matches(self, fd: int) -> bool:
        """True when the file's first ``length`` bytes still hash to ``digest``."""
        if self.length == 0:
            return True
        data = os.pread(fd, self.length, 0)
        return len(data) == self.length and _digest(data) == self.digest

    def refresh(self, fd: int, size: int) -> Fingerprint | None:
        """Check the fingerprint and extend it as the file grew; None when it no longer matches."""
        want = min(size, FINGERPRINT_BYTES)
        if want < self.length:
            return None
        data = os.pread(fd, want, 0)
        if len(data) < self.length:
            return None
        if self.length and _digest(data[: self.length]) != self.digest:
            return None
        if len(data) == self.length:
            return self
        return Fingerprint(_digest(data), len(data))

    def matches_prefix(self, head: bytes) -> bool:
        """True when ``head`` (a file's first bytes, read once) starts with this fingerprint's bytes."""
        return len(head) >= self.length and _digest(head[: self.length]) == self.digest

    @property
    def complete(self) -> bool:
        return self.length >= FINGERPRINT_BYTES

    def as_dict(self) -> dict[str, object]:
        return {"fingerprint": self.digest, "fingerprint_bytes": self.length}

    @classmethod
    def from_entry(cls, entry: dict[str, object]) -> Fingerprint | None:
        digest, length = entry.get("fingerprint"), entry.get("fingerprint_bytes")
        if isinstance(digest, str) and isinstance(length, int) and 0 <= length <= FINGERPRINT_BYTES:
            return cls(digest, length)
        return None


def read_head(path: str) -> tuple[int, int, int, bytes] | None:
    """(device, inode, size, first bytes) of the file at ``path``, or None if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino, st.st_size, os.pread(fd, min(st.st_size, FINGERPRINT_BYTES), 0)
    except OSError:
        return None
    finally:
        os.close(fd)


def find_inode(directory: str, key: Key) -> str:
    """The path of the file with identity ``key`` in ``directory`` ('' when there is none)."""
    try:
        with os.scandir(directory) as it:
            for e in it:
                if e.inode() == key[1] and e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    if st.st_dev == key[0]:
                        return e.path
    except OSError:
        pass
    return ""


def current_path(path: str, key: Key) -> str:
    """Where the file ``key`` last seen at ``path`` is now: there, renamed in its directory, or ''."""
    try:
        st = os.stat(path)
        if (st.st_dev, st.st_ino) == key:
            return path
    except OSError:
        pass
    return find_inode(os.path.dirname(path), key)


def open_listed(path: str, ino: int) -> tuple[str, os.stat_result, bytes] | None:
    """(path, stat, first bytes) of the file with inode ``ino`` listed at ``path``: there, or
    wherever it was renamed in the same directory since the listing; None when it is gone."""
    directory = os.path.dirname(path)
    for _ in range(3):  # renamed again while being looked for: look again
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            fd = -1
        try:
            st = os.fstat(fd) if fd >= 0 else os.stat(directory)
            if fd >= 0 and st.st_ino == ino:
                return path, st, os.pread(fd, min(st.st_size, FINGERPRINT_BYTES), 0)
        except OSError:
            return None
        finally:
            if fd >= 0:
                os.close(fd)
        path = find_inode(directory, (st.st_dev, ino))
        if not path:
            return None
    return None
