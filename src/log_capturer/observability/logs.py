"""The agent's own logs: one JSON object per line (``app.log_format: json``) or plain text.

JSON lines carry ``time``, ``level``, ``logger``, ``message``, ``service``
(``app.name``), ``environment`` (``app.environment``) and the record's extra
fields. Secrets never reach them: fields under secret-named keys are masked,
and every secret value the agent knows is replaced by ``***`` in the finished
line, whoever logged it (librdkafka's debug output included), see
:mod:`log_capturer.config.secrets`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson

from log_capturer.config.secrets import MASK, SecretScrubber, is_secret_key, mask_secrets

_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, environment: str = "", scrubber: SecretScrubber | None = None) -> None:
        super().__init__()
        self.service = service
        self.environment = environment
        self.scrubber = scrubber or SecretScrubber()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
        }
        if self.environment:
            out["environment"] = self.environment
        for k, v in record.__dict__.items():
            if k not in _STANDARD and not k.startswith("_"):
                out[k] = MASK if is_secret_key(k) else mask_secrets(v)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return self.scrubber.text(orjson.dumps(out, default=str).decode())


class TextFormatter(logging.Formatter):
    def __init__(self, scrubber: SecretScrubber | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.scrubber = scrubber or SecretScrubber()

    def format(self, record: logging.LogRecord) -> str:
        return self.scrubber.text(super().format(record))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now, so a live status display can redirect it."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is now (``app.log_stream: stdout``)."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup_logging(
    level: str,
    fmt: str,
    service: str,
    log_file: str = "",
    environment: str = "",
    secrets: Iterable[str] = (),
    stream: str = "stderr",
) -> None:
    """Route every logger (librdkafka's too) to stderr or stdout (and ``log_file``), secrets scrubbed."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handlers: list[logging.Handler] = [_StdoutHandler() if stream == "stdout" else _StderrHandler()]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    scrubber = SecretScrubber(secrets)
    formatter: logging.Formatter = (
        JsonFormatter(service, environment, scrubber) if fmt == "json" else TextFormatter(scrubber)
    )
    for h in handlers:
        h.setFormatter(formatter)
        root.addHandler(h)
    root.setLevel({"warn": "WARNING"}.get(level, level.upper()))
