"""Adaptive batching: when the records lingering in the producer leave before ``batch_timeout``.

librdkafka sends a partition's batch when it holds ``batch_size`` records
(``batch.num.messages``) or when its oldest record has waited ``batch_timeout``
(``linger.ms``). A fixed linger is a poor fit for a log shipper whose load
swings: at a trickle every record pays the whole linger for a batch that will
not grow, while under load an early send would only make batches smaller.

With ``adaptive_batching`` the poll thread *pushes* (sends what lingers at
once: librdkafka ignores linger.ms for the moment of a ``flush()``) when

- the dispatcher has handed over everything it had (its queue ran empty:
  :meth:`LingerPolicy.idle`), so waiting longer would add latency, not
  records (the dispatcher thread then wakes the poll thread, which would
  otherwise notice only at the end of its poll, up to a poll interval later);
  and
- the previous push has been acknowledged, so no request of it is still on its
  way. A push still unacknowledged after twice the measured round trip is
  repeated, with a doubling wait of at most half a second: a push sends
  nothing while, say, a partition's leader is not known yet, and its records
  would otherwise wait for ``batch_timeout``.

A steady stream of small chunks (many files each written a line at a time)
can keep the dispatcher from running empty for long while batches fill
slowly (10,000 one-line chunks a second over 6 partitions fill a batch of
1000 every 0.6 s), and on a loaded host one slow acknowledgement holds every
later record back. So records handed over after the last push also leave
once they have waited ``busy_wait`` (the measured round trip, at least 4 poll
intervals: 20 ms), whether or not the dispatcher ran empty and whether or not
the last push is acknowledged, unless ``batch_size`` records or more came since
the last push: those fill batches that leave by themselves, and pushing them
would only send smaller ones (at full speed, far fewer records a second); and
only while ``batch_timeout`` is at least twice ``busy_wait``: a short linger
sends the records in time anyway, in fuller batches than a push (during a push
every record produced leaves at once).

The batch size therefore follows the arrival rate, as in Nagle's algorithm. At
a low rate each burst of lines leaves at once, in small batches: the latency is
one round trip instead of ``batch_timeout``. At a moderate rate the lines that
arrive while a push is on its way gather, and leave together once it is
acknowledged: about arrival rate x round trip per batch. Under load a batch
holds what arrives in a round trip or two, or fills to ``batch_size`` before
(and leaves then, as without adaptive batching). No record ever waits longer
than ``batch_timeout``.

The policy compares counters, once per dispatcher batch and once per poll-loop
turn: there is no per-record work.
"""

from __future__ import annotations

#: Smoothing of the round-trip estimate (weight of the newest sample).
RTT_WEIGHT = 0.2
#: Largest round-trip sample taken (the records of a push that sent nothing are acknowledged
#: only after batch_timeout).
RTT_CAP = 0.25
#: Longest wait before an unacknowledged push is repeated.
REPEAT_MAX_WAIT = 0.5
#: Records handed over after the last push leave at the latest after this many poll intervals
#: (or a round trip, if longer), pushed or not: 20 ms with the 5 ms poll. At a rate that fills
#: batches of ``batch_size`` faster (300,000 records/s: 6,000 in 20 ms), they leave full first.
BUSY_WAIT_FLOORS = 4


class LingerPolicy:
    """Push decisions of one sink, from two running counts of records.

    ``handed``: records whose ``produce()`` calls have returned; ``finished``:
    records acknowledged or parked. Both only grow. :meth:`idle` is called by
    dispatcher threads under the sink's send lock, :meth:`push_due` by the poll
    thread on every turn of its loop.
    """

    __slots__ = (
        "acked",
        "batch_size",
        "busy_pushes",
        "enabled",
        "floor",
        "flushed_upto",
        "idle_upto",
        "linger",
        "pushed_at",
        "pushed_upto",
        "pushes",
        "repeats",
        "rtt",
        "waiting_since",
    )

    def __init__(self, enabled: bool, floor: float, batch_size: int = 1000, linger: float = 5.0) -> None:
        self.enabled = enabled
        #: Shortest time a push is waited for before it counts as overdue (the poll interval).
        self.floor = floor
        #: ``batch_size``: as many records handed over since the last push fill batches by
        #: themselves; they are not pushed for having waited (see :meth:`push_due`).
        self.batch_size = batch_size
        #: ``batch_timeout`` (librdkafka's linger.ms): records are pushed for having waited only
        #: while :meth:`busy_wait` is at most half of it (a shorter linger sends them anyway, in
        #: fuller batches than a push: during a push every record produced leaves at once).
        self.linger = linger
        #: ``handed`` when the dispatcher last ran empty.
        self.idle_upto = 0
        #: ``handed`` at the last push (the records it sent), and when it happened.
        self.pushed_upto = 0
        self.pushed_at = 0.0
        #: The last push's records have all been acknowledged (or parked).
        self.acked = True
        #: Times the last push was repeated because it stayed unacknowledged.
        self.repeats = 0
        #: Smoothed time from a push to the acknowledgement of its records; 0 until measured.
        self.rtt = 0.0
        #: Pushes so far (repeats included), for /stats.
        self.pushes = 0
        #: Of them, pushes of records that waited ``busy_wait`` (dispatcher busy or push unacknowledged).
        self.busy_pushes = 0
        #: ``handed`` at the last push: a push sends every record handed over until then (what
        #: the acknowledgement waits for is only ``pushed_upto``).
        self.flushed_upto = 0
        #: When records handed over after the last push were first seen (0: none waiting).
        self.waiting_since = 0.0

    def idle(self, handed: int) -> bool:
        """The dispatcher has nothing more queued; ``handed`` records were produced so far.
        True when this makes a push due at once (records came since the last push, which is
        acknowledged): the caller wakes the poll thread rather than leave them waiting for the
        end of its poll (up to a poll interval)."""
        if self.enabled and handed > self.idle_upto:
            self.idle_upto = handed
            return self.acked and handed > self.pushed_upto
        return False

    def overdue_after(self) -> float:
        """How long an unacknowledged push holds the next one back (doubling per repeat)."""
        return min((2 * self.rtt + self.floor) * 2.0 ** min(self.repeats, 8), REPEAT_MAX_WAIT)

    def busy_wait(self) -> float:
        """How long records handed over after the last push wait (for the dispatcher to run
        empty, for the last push's acknowledgement) before they are pushed anyway: a round
        trip, at least ``BUSY_WAIT_FLOORS`` poll intervals."""
        return max(BUSY_WAIT_FLOORS * self.floor, self.rtt)

    def push_due(self, finished: int, now: float, handed: int = 0) -> bool:
        """Send what lingers now? Once per idle dispatcher while the previous push is acknowledged,
        or once records handed over since the last push (``handed``: records whose ``produce()``
        returned) have waited :meth:`busy_wait`, fewer than ``batch_size`` of them (more fill
        batches that leave by themselves: a push would only make them smaller, a backlog at full
        speed then sends more, smaller requests) and ``linger`` at least twice that wait; an
        overdue push is repeated (what it held may have waited for a partition's leader)."""
        if not self.enabled:
            return False
        if handed > self.flushed_upto:
            if not self.waiting_since:
                self.waiting_since = now
            elif (
                now - self.waiting_since >= (wait := self.busy_wait())
                and 2 * wait <= self.linger
                and handed - self.flushed_upto < self.batch_size
            ):
                # Records waited long enough, the dispatcher busy or the last push on its way:
                # they leave now rather than wait for their batch to fill or for a slow ack.
                self.busy_pushes += 1
                self._push(now, handed, handed)
                return True
        if not self.acked:
            if finished >= self.pushed_upto:
                self.acked = True
                sample = min(now - self.pushed_at, RTT_CAP)
                self.rtt = sample if not self.rtt else self.rtt + RTT_WEIGHT * (sample - self.rtt)
            elif now - self.pushed_at < self.overdue_after():
                return False
            else:
                self.repeats += 1
                self._push(now, 0, handed)
                return True
        if self.idle_upto <= self.pushed_upto:
            return False
        self.repeats = 0
        self._push(now, 0, handed)
        return True

    def _push(self, now: float, upto: int, handed: int) -> None:
        self.pushed_upto = max(self.pushed_upto, self.idle_upto, upto)
        self.flushed_upto = max(self.flushed_upto, handed)
        self.waiting_since = 0.0
        self.pushed_at = now
        self.acked = False
        self.pushes += 1
