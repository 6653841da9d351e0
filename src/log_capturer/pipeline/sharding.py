"""A stable hash of a source id onto ``count`` shards (the worker processes).

BLAKE2b, not crc32: crc32 is linear, so names that differ in one character
(``app-0.log`` ... ``app-7.log``) can all have the same crc32 modulo 2 or 4 and
land in one shard. (The dispatch threads inside a process do not shard: they
share its sources through the keyed queue of :mod:`.queue`.)
"""

from __future__ import annotations

import hashlib


def stable_shard(key: str, count: int) -> int:
    """The shard (0..count-1) of ``key``; the same across runs and machines."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count
