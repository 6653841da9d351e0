"""glibc malloc settings for a process that ships at full speed.

librdkafka compresses each batch with a fresh compression context (zstd's
is 1-2 MiB) and frees it right after. With glibc's defaults, a block that
large is either mapped and unmapped (above the dynamic mmap threshold), or
taken from the top of a thread's heap and given back as soon as the free
space there passes the trim threshold. Either way the next batch faults the
same pages in again, zero-filled by the kernel: 357,000 page faults for 3
million lines in the max bench, and about a third of the CPU of librdkafka's
broker thread (docs/benchmarks-history.md, "What each change did").

:func:`tune_malloc` raises both thresholds once at start, so such blocks stay
in the heap and are reused. Memory the agent no longer needs is still given
back, only in larger steps (above ``TRIM_THRESHOLD`` of free space at the top
of a heap). Only a process with a Kafka producer (the Kafka sink) is tuned so:
a consumer's process (the Kafka source into Loki or Elasticsearch) peaked 30-35
MiB higher with it (librdkafka's fetch buffers stayed in its threads' heaps)
for 6-14 % less CPU a record and the same rate; it holds both thresholds at
glibc's initial 128 KiB instead, which glibc would otherwise raise as large
blocks are freed (202-207 MiB held so, 210-214 MiB with glibc's moving ones;
docs/benchmarks-history.md, 2026-12-07, "the Kafka source holds"). Settings
of the user's own (``GLIBC_TUNABLES`` with a ``glibc.malloc`` entry, or the
``MALLOC_*_`` variables) are left alone, and so is any C library that is not
glibc.

:func:`settle_gc` is the cyclic garbage collector's counterpart. Every source
that receives records (forward, HTTP ingest, OTLP, syslog) builds a few
containers per record, so the collector runs often, and each of its full
collections walked every object of the agent (the modules, the configuration,
the components: most of its heap) although none of them ever becomes garbage:
over half of the time of decoding a forward message in a bench of its own.
Once started, the agent collects what start-up left and moves the objects
alive then out of the collector's generations (``gc.freeze``); a reload frees
them again, collects, and freezes what is alive after it. Reference counting
frees every object as before; only a cycle made of objects alive at start (or
at the last reload) would wait for the next reload. It also lets 10,000 containers
(``GC_THRESHOLD``) be made between two young collections instead of 700: a source that
decodes records makes several per record and keeps them until the sinks acknowledge them, so
with CPython's default the collector walked those in flight again and again (the Kafka source:
about 1 us of its 5 per record in a bench of its own, docs/benchmarks-history.md). Garbage cycles are rare in
the agent; they wait a little longer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

#: mallopt() parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap instead of their own mapping.
MMAP_THRESHOLD = 4 << 20
#: Free space kept at the top of a heap before it is given back to the system.
TRIM_THRESHOLD = 32 << 20
#: glibc's initial thresholds (both), held in a process without a Kafka producer.
DEFAULT_THRESHOLD = 128 << 10

#: Allocations of containers between two young collections (CPython's default: 700).
GC_THRESHOLD = 10_000

_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")


def user_malloc_settings(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """The variable through which the user tuned malloc, or ''."""
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    return next((name for name in _USER_SETTINGS if name in environ), "")


def tune_malloc(producer: bool = True) -> str:
    """Raise glibc's mmap and trim thresholds in a process with a Kafka producer (``producer``);
    in one without, hold both at glibc's initial 128 KiB (glibc would raise them as large blocks
    are freed, and keep the consumer's fetch buffers). Returns what was done, for the log."""
    user = user_malloc_settings()
    if user:
        return f"left as set by {user}"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return "not glibc: left alone"
    gnu_get_libc_version.restype = ctypes.c_char_p
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap, trim = (MMAP_THRESHOLD, TRIM_THRESHOLD) if producer else (DEFAULT_THRESHOLD, DEFAULT_THRESHOLD)
    # The mmap threshold first: setting either one turns off glibc's dynamic adjustment of both.
    if not mallopt(M_MMAP_THRESHOLD, mmap) or not mallopt(M_TRIM_THRESHOLD, trim):
        return "mallopt refused the thresholds: left alone"
    version = gnu_get_libc_version().decode()
    why = "" if producer else " (no Kafka producer in this process)"
    return f"glibc {version}: mmap threshold {_size(mmap)}, trim threshold {_size(trim)}{why}"


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def settle_gc() -> str:
    """Collect, then leave the objects alive now out of the collector's walks (``gc.freeze``);
    those frozen before (at start, at the last reload) are collected with the rest first; young
    collections every ``GC_THRESHOLD`` containers. Returns what was done, for the log."""
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    return f"{gc.get_freeze_count()} objects frozen ({found} collected)"
