"""glibc malloc thresholds: blocks freed and taken again are not faulted in again."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

from log_capturer import memory
from log_capturer.memory import user_malloc_settings

#: What librdkafka's broker thread does for each produce request (seen with strace: the heap
#: of its arena trimmed by 7.5 MB, MADV_DONTNEED, several times a second): a few MB of blocks
#: taken in a thread, written, and freed together, 200 times. Prints the page faults it caused.
CHURN = """
import ctypes, resource, sys, threading
from log_capturer.memory import tune_malloc
if sys.argv[1] == "tuned":
    print(tune_malloc(), file=sys.stderr)
elif sys.argv[1] == "consumer":
    print(tune_malloc(producer=False), file=sys.stderr)
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
sizes = [2_000_000] + [900_000] * 8

def churn():
    for _ in range(200):
        blocks = [libc.malloc(s) for s in sizes]
        for p, s in zip(blocks, sizes):
            ctypes.memset(p, 1, s)
        for p in blocks:
            libc.free(p)

before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t = threading.Thread(target=churn)
t.start()
t.join()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHURN, mode],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    return int(out.stdout)


def test_tuned_malloc_reuses_freed_blocks_instead_of_faulting_them_in_again() -> None:
    default, tuned = faults("default"), faults("tuned")
    # glibc's defaults give the 9.2 MB back to the system after each round and fault it in
    # again (about 2,200 pages a round); tuned, it is faulted in once.
    assert default > 100_000, default
    assert tuned < 20_000, tuned


def test_a_process_without_a_kafka_producer_holds_glibcs_initial_thresholds() -> None:
    # Its memory matters more than the faults (a consumer peaked 30-35 MiB higher tuned).
    assert faults("consumer") > 100_000
    said = memory.tune_malloc(producer=False)
    assert said.endswith(
        "mmap threshold 128 KiB, trim threshold 128 KiB (no Kafka producer in this process)"
    ) or (said.startswith("left as set by")), said


def test_the_users_own_malloc_settings_are_left_alone() -> None:
    assert user_malloc_settings({}) == ""
    assert user_malloc_settings({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}) == "GLIBC_TUNABLES"
    assert user_malloc_settings({"GLIBC_TUNABLES": "glibc.rtld.nns=2"}) == ""
    assert user_malloc_settings({"MALLOC_ARENA_MAX": "2"}) == "MALLOC_ARENA_MAX"


def test_settle_gc_freezes_what_is_alive_and_a_new_settle_collects_what_died_since() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the cyclic collector frees it

    threshold = gc.get_threshold()
    try:
        alive = Node()
        dead = Node()
        dead_ref = weakref.ref(dead)
        assert "objects frozen" in memory.settle_gc()
        assert gc.get_freeze_count() > 0
        # Young collections further apart; the older generations' own thresholds as they were.
        assert gc.get_threshold() == (memory.GC_THRESHOLD, *threshold[1:])
        assert alive.me is alive
        del dead
        gc.collect()
        assert dead_ref() is not None  # frozen: a full collection leaves it
        memory.settle_gc()  # a reload: unfrozen, collected, the living frozen again
        assert dead_ref() is None
        later = Node()
        later_ref = weakref.ref(later)
        del later
        gc.collect()
        assert later_ref() is None  # objects made after the freeze are collected as usual
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
