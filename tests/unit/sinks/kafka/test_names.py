"""The Kafka sink's metric label is its type, ``kafka``; its name elsewhere stays ``kafka_sink``."""

from __future__ import annotations

from log_capturer.config.schema import KafkaSinkConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.sinks.kafka.sink import KafkaSink


def test_the_sink_labels_its_metrics_with_its_type_and_keeps_its_name() -> None:
    metrics = Metrics()
    sink = KafkaSink(KafkaSinkConfig(), metrics, None)  # builds its parts; connects only in start()
    assert (sink.name, sink.sink_type) == ("kafka_sink", "kafka")
    assert sink.health().name == "kafka_sink"
    series = {
        dict(s.labels)["sink_name"]
        for family in metrics.registry.collect()
        for s in family.samples
        if "sink_name" in s.labels
    }
    assert series == {"kafka"}  # the backpressure counters, created at 0 with the sink
