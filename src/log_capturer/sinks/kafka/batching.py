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
  records; and
- the previous push has been acknowledged, so no request of it is still on its
  way. A push still unacknowledged after twice the measured round trip is
  repeated, with a doubling wait of at most half a second: a push sends
  nothing while, say, a partition's leader is not known yet, and its records
  would otherwise wait for ``batch_timeout``.

The batch size therefore follows the arrival rate, as in Nagle's algorithm. At
a low rate each burst of lines leaves at once, in small batches: the latency is
one round trip instead of ``batch_timeout``. At a moderate rate the lines that
arrive while a push is on its way gather, and leave together once it is
acknowledged: about arrival rate x round trip per batch. Under load the
dispatcher never runs empty, nothing is pushed, and batches fill to
``batch_size`` or leave after ``batch_timeout``, exactly as without adaptive
batching. No record ever waits longer than ``batch_timeout``.

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


class LingerPolicy:
    """Push decisions of one sink, from two running counts of records.

    ``handed``: records whose ``produce()`` calls have returned; ``finished``:
    records acknowledged or parked. Both only grow. :meth:`idle` is called by
    dispatcher threads under the sink's send lock, :meth:`push_due` by the poll
    thread on every turn of its loop.
    """

    __slots__ = (
        "acked",
        "enabled",
        "floor",
        "idle_upto",
        "pushed_at",
        "pushed_upto",
        "pushes",
        "repeats",
        "rtt",
    )

    def __init__(self, enabled: bool, floor: float) -> None:
        self.enabled = enabled
        #: Shortest time a push is waited for before it counts as overdue (the poll interval).
        self.floor = floor
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

    def idle(self, handed: int) -> None:
        """The dispatcher has nothing more queued; ``handed`` records were produced so far."""
        if self.enabled and handed > self.idle_upto:
            self.idle_upto = handed

    def overdue_after(self) -> float:
        """How long an unacknowledged push holds the next one back (doubling per repeat)."""
        return min((2 * self.rtt + self.floor) * 2.0 ** min(self.repeats, 8), REPEAT_MAX_WAIT)

    def push_due(self, finished: int, now: float) -> bool:
        """Send what lingers now? Once per idle dispatcher while the previous push is acknowledged;
        an overdue push is repeated (what it held may have waited for a partition's leader)."""
        if not self.acked:
            if finished >= self.pushed_upto:
                self.acked = True
                sample = min(now - self.pushed_at, RTT_CAP)
                self.rtt = sample if not self.rtt else self.rtt + RTT_WEIGHT * (sample - self.rtt)
            elif now - self.pushed_at < self.overdue_after():
                return False
            else:
                self.repeats += 1
                self._push(now)
                return True
        if self.idle_upto <= self.pushed_upto:
            return False
        self.repeats = 0
        self._push(now)
        return True

    def _push(self, now: float) -> None:
        self.pushed_upto = max(self.pushed_upto, self.idle_upto)
        self.pushed_at = now
        self.acked = False
        self.pushes += 1
