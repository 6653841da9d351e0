"""The watermark tracker: only the contiguous prefix of acknowledged polls is ever committed."""

from __future__ import annotations

import threading

from log_capturer.sources.kafka.offsets import Watermarks

TP = ("logs", 0)


def segment(marks: Watermarks, start: int, end: int, parts: int, tp: tuple[str, int] = TP):  # type: ignore[no-untyped-def]
    seg = marks.add(tp, start, end, end - start)
    marks.add_part(seg, parts)
    marks.seal(seg)
    return seg


def test_nothing_to_commit_before_an_acknowledgement() -> None:
    marks = Watermarks()
    marks.assign([TP])
    segment(marks, 0, 10, 1)
    assert marks.to_commit() == {}
    assert marks.in_flight == 10


def test_in_order_acknowledgements_move_the_watermark() -> None:
    marks = Watermarks()
    a = segment(marks, 0, 10, 1)
    b = segment(marks, 10, 20, 1)
    marks.part_done(a)
    assert marks.to_commit() == {TP: 10}
    marks.part_done(b)
    assert marks.to_commit() == {TP: 20}
    assert marks.in_flight == 0


def test_out_of_order_acknowledgements_wait_for_the_first() -> None:
    marks = Watermarks()
    a = segment(marks, 0, 10, 2)
    b = segment(marks, 10, 20, 1)
    c = segment(marks, 20, 30, 1)
    marks.part_done(c)
    marks.part_done(b)
    marks.part_done(a)  # one of a's two parts
    assert marks.to_commit() == {}
    assert marks.in_flight == 30
    marks.part_done(a)
    assert marks.to_commit() == {TP: 30}
    assert marks.in_flight == 0


def test_a_gap_between_polls_is_covered_by_the_next_start() -> None:
    marks = Watermarks()
    a = segment(marks, 0, 5, 1)
    b = segment(marks, 7, 9, 1)  # 5 and 6: transaction markers
    marks.part_done(a)
    marks.part_done(b)
    assert marks.to_commit() == {TP: 9}


def test_a_segment_is_held_until_sealed() -> None:
    marks = Watermarks()
    seg = marks.add(TP, 0, 4, 4)
    marks.add_part(seg)
    marks.part_done(seg)  # its only chunk so far, before the poll's other chunks were added
    assert marks.to_commit() == {}
    marks.seal(seg)
    assert marks.to_commit() == {TP: 4}


def test_a_segment_that_never_finishes_stops_the_partition_only() -> None:
    other = ("logs", 1)
    marks = Watermarks()
    stuck = segment(marks, 0, 10, 1)
    later = segment(marks, 10, 20, 1)
    o = segment(marks, 0, 3, 1, other)
    marks.part_done(later)
    marks.part_done(o)
    assert marks.to_commit() == {other: 3}
    assert stuck.parts == 1


def test_committed_offsets_are_not_committed_again() -> None:
    marks = Watermarks()
    a = segment(marks, 0, 10, 1)
    marks.part_done(a)
    marks.committed({TP: 10})
    assert marks.to_commit() == {}
    b = segment(marks, 10, 11, 1)
    marks.part_done(b)
    assert marks.to_commit([TP]) == {TP: 11}
    assert marks.to_commit([("logs", 9)]) == {}


def test_an_older_commit_answered_after_a_newer_one_is_committed_again() -> None:
    """librdkafka sends a commit again when its coordinator dies with it in flight; if a newer
    commit went to the new coordinator first, the group holds the older offset at the end."""
    marks = Watermarks()
    a = segment(marks, 0, 10, 1)
    marks.part_done(a)
    b = segment(marks, 10, 20, 1)
    marks.part_done(b)
    marks.committed({TP: 20})
    assert marks.to_commit() == {}
    assert marks.committed({TP: 10}) == [TP]
    assert marks.to_commit() == {TP: 20}
    marks.committed({TP: 20})
    assert marks.to_commit() == {}


def test_revoke_waits_for_in_flight_records_then_forgets_the_partition() -> None:
    marks = Watermarks()
    a = segment(marks, 0, 10, 1)
    assert not marks.wait_settled([TP], 0.05)
    threading.Timer(0.1, marks.part_done, (a,)).start()
    assert marks.wait_settled([TP], 5)
    assert marks.to_commit([TP]) == {TP: 10}
    marks.revoke([TP])
    assert marks.to_commit() == {}
    assert marks.partitions() == {}


def test_revoked_records_still_in_flight_leave_the_budget() -> None:
    marks = Watermarks()
    a = segment(marks, 0, 10, 1)
    marks.revoke([TP])
    assert marks.in_flight == 0
    marks.part_done(a)  # acknowledged after the revocation: counted once, moves nothing
    assert marks.in_flight == 0
    assert marks.to_commit() == {}
    marks.assign([TP])  # assigned again: starts afresh
    assert marks.partitions() == {TP: (-1, -1, 0)}


def test_acknowledgements_from_many_threads() -> None:
    marks = Watermarks()
    segs = [segment(marks, i * 10, i * 10 + 10, 3) for i in range(200)]
    work = [s for s in segs for _ in range(3)]
    work.reverse()
    threads = [
        threading.Thread(target=lambda part=work[i::4]: [marks.part_done(s) for s in part]) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert marks.to_commit() == {TP: 2000}
    assert marks.in_flight == 0


def test_a_dropped_part_is_not_waited_for_and_holds_the_watermark() -> None:
    marks = Watermarks()
    a = segment(marks, 0, 10, 1)
    b = segment(marks, 10, 20, 2)  # one chunk handed over, one dropped (never handed over)
    marks.part_done(a)
    marks.drop(b)
    assert not marks.wait_settled([TP], 0.05)  # b's other chunk is still in flight
    threading.Timer(0.1, marks.part_done, (b,)).start()
    assert marks.wait_settled([TP], 5)
    # Every part of b ended, one of them never delivered: the offset stays before b.
    assert marks.to_commit() == {TP: 10}
    later = segment(marks, 20, 30, 1)
    marks.part_done(later)
    assert marks.to_commit() == {TP: 10}
