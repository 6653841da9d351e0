"""The ``sinks.loki`` section: the original agent's keys are accepted, mistakes name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from log_capturer.config import load_config
from log_capturer.config.schema import Config
from log_capturer.sinks.loki.config import LokiSinkConfig


def test_the_original_agents_keys_are_accepted() -> None:
    cfg = Config.model_validate(
        {
            "sinks": {
                "loki": {
                    "enabled": True,
                    "url": "http://loki:3100",
                    "push_endpoint": "/loki/api/v1/push",
                    "tenant_id": "team-a",
                    "timeout": "10s",
                    "batch_size": 500,
                    "batch_timeout": "2s",
                    "max_request_size": 1048576,
                    "queue_size": 10000,
                    "default_labels": {"service": "ssw-logs-capture", "env": "prod"},
                    "headers": {"X-Custom": "1"},
                    "auth": {"type": "basic", "username": "u", "password": "p"},
                    "tls": {"enabled": False, "verify_certificate": True},
                    "backpressure_config": {"enabled": True},
                    "dlq_config": {
                        "enabled": True,
                        "send_on_queue_full": True,
                        "send_on_timeout": True,
                        "send_on_error": True,
                    },
                    "adaptive_batching": {
                        "enabled": True,
                        "min_batch_size": 10,
                        "max_batch_size": 1000,
                        "initial_batch_size": 100,
                        "min_flush_delay": "10ms",
                        "max_flush_delay": "1s",
                    },
                    "timestamp_learning": {
                        "enabled": True,
                        "default_max_age": "168h",
                        "clamp_enabled": False,
                        "learn_from_errors": True,
                        "min_learning_window": "1h",
                    },
                }
            }
        }
    )
    loki = cfg.sinks.loki
    assert loki.push_url == "http://loki:3100/loki/api/v1/push"
    assert loki.timestamp_learning.default_max_age == 168 * 3600
    assert loki.auth.password.get_secret_value() == "p"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"url": "loki:3100"}, r"not an http\(s\) URL"),
        ({"push_endpoint": "loki/api/v1/push"}, "must start with '/'"),
        ({"default_labels": {"my-label": "x"}}, "not a Loki label name"),
        ({"label_fields": {"app": "labels"}}, "not a record field"),
        ({"structured_metadata": ["trace"]}, "not a record field"),
        ({"auth": {"type": "basic"}}, "auth.username is empty"),
        ({"auth": {"type": "bearer"}}, "auth.token is empty"),
        ({"dlq_config": {"send_on_error": False}}, "would drop the records"),
        ({"tls": {"enabled": True}}, "needs an https:// url"),
        ({"headers": {"Content-Type": "x"}}, "set by the sink itself"),
        ({"labels": {"a": "b"}}, "Extra inputs are not permitted"),
    ],
)
def test_mistakes_name_the_key_and_the_fix(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LokiSinkConfig.model_validate({"enabled": True, **section})


def test_the_destination_hides_credentials() -> None:
    cfg = LokiSinkConfig.model_validate({"url": "https://user:secret@loki.example:3100/"})
    assert cfg.destination == "https://loki.example:3100/loki/api/v1/push"


def test_the_example_config_loads(repo_root: Path) -> None:
    cfg = load_config(repo_root / "configs" / "loki.yaml", env={})
    assert cfg.sinks.loki.enabled and not cfg.sinks.kafka.enabled
    assert cfg.sinks.loki.push_url == "http://127.0.0.1:9428/insert/loki/api/v1/push"
