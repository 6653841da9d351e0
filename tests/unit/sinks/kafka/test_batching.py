"""The adaptive batching policy: when lingering records are pushed, from counts and times."""

from __future__ import annotations

from log_capturer.sinks.kafka.batching import BUSY_WAIT_FLOORS, REPEAT_MAX_WAIT, RTT_CAP, LingerPolicy

FLOOR = 0.005


def test_nothing_is_pushed_until_the_dispatcher_runs_empty() -> None:
    p = LingerPolicy(True, FLOOR)
    assert not p.push_due(finished=0, now=1.0)
    p.idle(handed=10)
    assert p.push_due(finished=0, now=1.0)
    # Once per idle dispatcher: no new records handed, nothing more to push.
    assert not p.push_due(finished=10, now=1.01)
    assert p.pushes == 1


def test_disabled_never_pushes() -> None:
    p = LingerPolicy(False, FLOOR)
    p.idle(handed=10)
    assert not p.push_due(finished=0, now=1.0)
    assert p.pushes == 0


def test_records_gather_while_a_push_is_on_its_way_and_leave_once_it_is_acknowledged() -> None:
    p = LingerPolicy(True, FLOOR)
    p.idle(handed=10)
    assert p.push_due(finished=0, now=1.0)
    p.idle(handed=25)
    # Still within the overdue time (floor, as no round trip was measured yet).
    assert not p.push_due(finished=0, now=1.002)
    # The push's 10 records are acknowledged: the 15 that gathered leave together.
    assert p.push_due(finished=10, now=1.004)
    assert p.pushed_upto == 25
    assert abs(p.rtt - 0.004) < 1e-9


def test_an_unacknowledged_push_is_repeated_with_a_doubling_wait() -> None:
    p = LingerPolicy(True, FLOOR)
    p.idle(handed=5)
    assert p.push_due(finished=0, now=0.0)
    assert p.push_due(finished=0, now=0.006)  # overdue after 5 ms: repeated
    assert not p.push_due(finished=0, now=0.006 + 0.009)  # now it waits 10 ms
    assert p.push_due(finished=0, now=0.006 + 0.011)
    # However long it stays unacknowledged, a repeat comes at least every REPEAT_MAX_WAIT.
    t = 0.017
    for _ in range(20):
        t += REPEAT_MAX_WAIT + 0.001
        assert p.push_due(finished=0, now=t)
    assert p.repeats == 22


def test_a_new_idle_dispatcher_after_an_acknowledged_push_resets_the_repeats() -> None:
    p = LingerPolicy(True, FLOOR)
    p.idle(handed=5)
    assert p.push_due(finished=0, now=0.0)
    assert p.push_due(finished=0, now=0.006)
    assert p.repeats == 1
    p.idle(handed=8)
    assert p.push_due(finished=5, now=0.01)
    assert p.repeats == 0


def test_the_round_trip_estimate_is_smoothed_and_capped() -> None:
    p = LingerPolicy(True, FLOOR)
    now = 0.0
    for handed in range(1, 31):
        p.idle(handed)
        assert p.push_due(handed - 1, now)
        now += 10.0  # acknowledged only after a long linger (the push sent nothing)
        assert not p.push_due(handed, now)
    assert p.rtt == RTT_CAP
    # A slow round trip holds the next push back for at most 2 x RTT_CAP + floor.
    assert p.overdue_after() <= REPEAT_MAX_WAIT


def test_the_largest_idle_count_wins() -> None:
    p = LingerPolicy(True, FLOOR)
    p.idle(handed=50)
    p.idle(handed=40)  # a second dispatcher thread reporting late
    assert p.push_due(finished=0, now=0.0)
    assert p.pushed_upto == 50


def test_records_handed_over_while_the_dispatcher_stays_busy_leave_after_the_busy_wait() -> None:
    p = LingerPolicy(True, FLOOR)
    wait = p.busy_wait()
    assert wait == BUSY_WAIT_FLOORS * FLOOR  # no round trip measured yet
    # The dispatcher never runs empty: records are handed over, none is pushed at first.
    assert not p.push_due(finished=0, now=1.0, handed=10)
    assert not p.push_due(finished=0, now=1.0 + wait / 2, handed=30)
    # The first of them has waited busy_wait: everything handed over so far leaves.
    assert p.push_due(finished=0, now=1.0 + wait, handed=40)
    assert (p.pushed_upto, p.busy_pushes, p.pushes) == (40, 1, 1)
    # Acknowledged 2 ms later (the round trip measured); nothing new: nothing more to push.
    assert not p.push_due(finished=40, now=1.002 + wait, handed=40)
    assert p.acked and abs(p.rtt - 0.002) < 1e-9 and p.busy_wait() == wait
    assert not p.push_due(finished=40, now=2.0, handed=40)
    # The next records wait from when they are first seen, not from the last push.
    assert not p.push_due(finished=40, now=3.0, handed=41)
    assert not p.push_due(finished=40, now=3.0 + wait / 2, handed=41)
    assert p.push_due(finished=40, now=3.0 + wait, handed=41)
    assert p.busy_pushes == 2


def test_a_slow_acknowledgement_holds_later_records_back_for_the_busy_wait_only() -> None:
    p = LingerPolicy(True, FLOOR)
    p.rtt = 0.03  # measured earlier: busy_wait 30 ms, a push overdue after 2 x 30 + 5 = 65 ms
    p.idle(handed=10)
    assert p.push_due(finished=0, now=0.0, handed=10)
    # More records while the push is unacknowledged: they gather...
    assert not p.push_due(finished=0, now=0.001, handed=25)
    assert not p.push_due(finished=0, now=0.030, handed=25)
    # ...and leave once they waited busy_wait, long before the push would be repeated.
    assert p.push_due(finished=0, now=0.031, handed=25)
    assert (p.pushed_upto, p.flushed_upto, p.busy_pushes, p.repeats) == (25, 25, 1, 0)
    # Their acknowledgement (and the first push's) is measured from the latest push.
    assert not p.push_due(finished=25, now=0.041, handed=25)
    assert p.acked and p.rtt < 0.03


def test_any_push_sends_every_record_handed_over_so_far() -> None:
    p = LingerPolicy(True, FLOOR)
    p.idle(handed=10)
    # 5 more handed over after the dispatcher's idle report: the flush sends them too.
    assert p.push_due(finished=0, now=0.0, handed=15)
    assert (p.pushed_upto, p.flushed_upto) == (10, 15)
    assert not p.push_due(finished=10, now=0.002, handed=15)
    assert not p.push_due(finished=15, now=1.0, handed=15)
    assert p.pushes == 1 and p.busy_pushes == 0


def test_the_busy_wait_follows_a_longer_round_trip_and_nothing_is_pushed_when_disabled() -> None:
    p = LingerPolicy(True, FLOOR)
    p.rtt = 0.08
    assert p.busy_wait() == 0.08
    off = LingerPolicy(False, FLOOR)
    assert not off.push_due(finished=0, now=0.0, handed=10)
    assert not off.push_due(finished=0, now=10.0, handed=10)
    assert off.pushes == 0


def test_records_that_fill_batches_by_themselves_are_not_pushed_for_having_waited() -> None:
    p = LingerPolicy(True, FLOOR, batch_size=100)
    wait = p.busy_wait()
    # A backlog at full speed: 100 records or more since the last push leave in full batches.
    assert not p.push_due(finished=0, now=1.0, handed=50)
    assert not p.push_due(finished=0, now=1.0 + wait, handed=100)
    assert not p.push_due(finished=0, now=2.0, handed=5000)
    assert p.pushes == 0
    # The dispatcher runs empty: what is left is pushed as before.
    p.idle(handed=5000)
    assert p.push_due(finished=0, now=2.0, handed=5000)
    # Afterwards a trickle (fewer than batch_size) waits busy_wait at most again.
    assert not p.push_due(finished=5000, now=2.001, handed=5010)
    assert p.push_due(finished=5000, now=2.001 + wait, handed=5030)
    assert p.busy_pushes == 1


def test_with_a_linger_shorter_than_twice_the_busy_wait_librdkafka_sends_them_instead() -> None:
    p = LingerPolicy(True, FLOOR, batch_size=10_000, linger=0.02)  # the bench's 20 ms
    assert not p.push_due(finished=0, now=1.0, handed=10)
    assert not p.push_due(finished=0, now=1.0 + p.busy_wait(), handed=20)
    assert not p.push_due(finished=0, now=2.0, handed=30)
    assert p.pushes == 0
    # A linger of twice the wait or more: pushed after the wait.
    q = LingerPolicy(True, FLOOR, batch_size=10_000, linger=2 * BUSY_WAIT_FLOORS * FLOOR)
    assert not q.push_due(finished=0, now=1.0, handed=10)
    assert q.push_due(finished=0, now=1.0 + q.busy_wait(), handed=20)


def test_idle_says_when_it_makes_a_push_due_so_the_poll_thread_is_woken_at_once() -> None:
    p = LingerPolicy(True, FLOOR)
    assert p.idle(handed=10)  # records since the last push, which is acknowledged (none yet)
    assert not p.idle(handed=10)  # nothing new
    assert p.push_due(finished=0, now=1.0)
    # While that push is on its way, records gather: no wake-up (its acknowledgement wakes it).
    assert not p.idle(handed=20)
    assert p.push_due(finished=10, now=1.004)  # acknowledged: the 10 gathered leave
    assert not p.idle(handed=20)  # (already pushed)
    assert not LingerPolicy(False, FLOOR).idle(handed=10)
