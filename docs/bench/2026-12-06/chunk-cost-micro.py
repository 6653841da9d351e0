"""Per-chunk costs removed by the chunk-cost branch, timed alone (best of 7 repeats)."""
import collections
import threading
import timeit

from prometheus_client import CollectorRegistry

from log_capturer.observability.metrics import Metrics

m = Metrics(CollectorRegistry())
t = "logs"


def labels_five() -> None:  # SinkRunner._finished before: five labels() a chunk of one topic
    m.kafka_messages_produced.labels(t, "success")
    m.kafka_batch_size.labels(t)
    m.kafka_batch_send_duration.labels(t)
    m.sink_send_duration.labels("kafka")
    m.logs_sent.labels("kafka", "success")


cache: dict[str, tuple[int, int, int]] = {}
sink_children = (1, 2)


def cached_five() -> None:  # after: one dict lookup and an attribute
    c = cache.get(t)
    if c is None:
        c = cache[t] = (1, 2, 3)
    a, b, d = c
    e, f = sink_children


def processed_labels() -> None:
    m.logs_processed.labels("file", "/var/log/app/x.log", "default")


children: dict[tuple[str, ...], object] = {}


def processed_cached() -> None:
    k = ("file", "/var/log/app/x.log", "default")
    c = children.get(k)
    if c is None:
        children[k] = m.logs_processed.labels(*k)


counts = {"logs": 1}
lk = threading.Lock()
c1, c2 = threading.Condition(lk), threading.Condition(lk)
waiting = 0


def notify_put() -> None:
    with lk:
        c1.notify()
        c2.notify_all()


def gated_put() -> None:
    with lk:
        if waiting:
            c1.notify()
        if waiting:
            c2.notify_all()


N = 100_000
for name, f in [
    ("5 x labels() (SinkRunner._finished)", labels_five),
    ("  cached", cached_five),
    ("logs_processed.labels() (Dispatcher.submit)", processed_labels),
    ("  cached", processed_cached),
    ("collections.Counter(counts)", lambda: collections.Counter(counts)),
    ("  dict(counts)", lambda: dict(counts)),
    ("put: notify() + notify_all(), nobody waiting", notify_put),
    ("  gated on a waiter count", gated_put),
]:
    best = min(timeit.repeat(f, number=N, repeat=7)) / N * 1e6
    print(f"{name:48s} {best:6.2f} us")
