"""librdkafka statistics (``statistics.interval.ms``) turned into metrics and health.

- broker connection state -> ``kafka_connection_status{broker,sink_name}`` (1 when UP);
- per-partition ``txmsgs`` deltas -> ``kafka_partition_messages_total{topic,partition}``
  (records transmitted to each partition);
- per-topic rolling batch statistics -> ``kafka_compression_ratio{topic,compression_type}``:
  uncompressed bytes of a batch (records x their average size, known to the sink)
  over the batch's size on the wire (``batchsize``), so an estimate over the window.
"""

from __future__ import annotations

from typing import Any

from log_capturer.observability.metrics import Metrics


class StatsTracker:
    def __init__(self, metrics: Metrics, metric_label: str, compression: str) -> None:
        """``metric_label``: the ``sink_name`` label of ``kafka_connection_status`` (the sink type)."""
        self.metrics = metrics
        self.metric_label = metric_label
        self.compression = compression
        self._txmsgs: dict[tuple[str, int], int] = {}
        self.brokers_up: dict[str, bool] = {}
        self.compression_ratio: dict[str, float] = {}

    def update(self, stats: dict[str, Any], avg_record_bytes: dict[str, float]) -> None:
        m = self.metrics
        # A broker may appear twice (bootstrap placeholder and learned entry), and a learned
        # entry disappears while its broker is down: a broker seen before stays, as down.
        up: dict[str, bool] = dict.fromkeys(self.brokers_up, False)
        for b in stats.get("brokers", {}).values():
            addr = str(b.get("nodename") or b.get("name", ""))
            up[addr] = up.get(addr, False) or b.get("state") == "UP"
        for addr, ok in up.items():
            m.kafka_connection_status.labels(addr, self.metric_label).set(1 if ok else 0)
        if up:
            self.brokers_up = up
        for topic, t in stats.get("topics", {}).items():
            for pid, p in t.get("partitions", {}).items():
                part = int(pid)
                if part < 0:
                    continue
                tx = int(p.get("txmsgs", 0))
                prev = self._txmsgs.get((topic, part), 0)
                delta = tx - prev if tx >= prev else tx  # a new producer restarts its counters
                self._txmsgs[(topic, part)] = tx
                if delta:
                    m.kafka_partition_messages.labels(topic, str(part)).inc(delta)
            size = t.get("batchsize", {}).get("avg", 0)
            count = t.get("batchcnt", {}).get("avg", 0)
            avg = avg_record_bytes.get(topic, 0.0)
            if size > 0 and count > 0 and avg > 0:
                ratio = count * avg / size
                self.compression_ratio[topic] = ratio
                m.kafka_compression_ratio.labels(topic, self.compression).set(round(ratio, 3))

    @property
    def all_down(self) -> bool:
        return bool(self.brokers_up) and not any(self.brokers_up.values())
