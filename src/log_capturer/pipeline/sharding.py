"""A stable hash of a source id onto ``count`` shards (dispatch threads, worker processes).

BLAKE2b, not crc32: crc32 is linear, so names that differ in one character
(``app-0.log`` ... ``app-7.log``) can all have the same crc32 modulo 2 or 4 and
land in one shard. ``salt`` makes two shardings independent: the dispatch
threads inside a worker process must not split that worker's sources the way
the processes were split (they would all fall on one thread).
"""

from __future__ import annotations

import hashlib


def stable_shard(key: str, count: int, salt: bytes = b"") -> int:
    """The shard (0..count-1) of ``key``; the same across runs and machines."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8, salt=salt).digest()
    return int.from_bytes(digest, "big") % count
