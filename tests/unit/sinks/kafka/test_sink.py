"""What the Kafka sink tells the dispatcher about the lines of the chunks it took."""

from __future__ import annotations

from log_capturer.config.schema import KafkaSinkConfig
from log_capturer.observability.metrics import Metrics
from log_capturer.sinks.kafka.sink import KafkaSink


def test_the_sink_lets_a_chunk_s_text_go_unless_exactly_once_needs_it_later() -> None:
    # Exactly-once finds the line of a record refused in an aborted transaction in its chunk.
    once = KafkaSinkConfig.model_validate({"delivery": "exactly_once", "required_acks": -1})
    assert not KafkaSink(once, Metrics(), None).releases_text  # builds its parts; connects in start()
    assert KafkaSink(KafkaSinkConfig(), Metrics(), None).releases_text
