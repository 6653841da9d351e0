"""OpenTelemetry logs (OTLP over HTTP, ``POST /v1/logs``): ``config``, ``decode`` and ``source``."""
