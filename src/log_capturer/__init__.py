"""SSW Logs Capture: tail logs and ship every line to Apache Kafka without losing one."""

__version__ = "0.1.0"
