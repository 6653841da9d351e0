from __future__ import annotations

import pytest

from log_capturer.config import ConfigError, load_config_text
from log_capturer.config.secrets import (
    MASK,
    SecretScrubber,
    is_secret_key,
    mask_secrets,
    masked_config,
    secret_values,
)

CONFIG = """
sinks:
  kafka:
    enabled: true
    auth: {enabled: true, username: alice, password: "${KAFKA_PASS}"}
    librdkafka_options: {"ssl.key.password": "key-pass-123", "client.rack": "rack-1"}
"""


@pytest.mark.parametrize(
    "key",
    ["password", "sasl.password", "ssl.key.password", "ssl.key.pem", "client_secret", "api_token", "API_KEY"],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["username", "ssl.key.location", "brokers", "topic", "key_field"])
def test_not_secret_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_mask_secrets_goes_deep() -> None:
    data = {"a": {"password": "x", "list": [{"token": "y", "keep": 1}]}, "user": "u"}
    assert mask_secrets(data) == {"a": {"password": MASK, "list": [{"token": MASK, "keep": 1}]}, "user": "u"}


def test_masked_config_and_known_secret_values() -> None:
    env = {"KAFKA_PASS": "s3cr3t-pass", "MY_API_TOKEN": "tok-abcdef", "HOME": "/root", "SHORT_PASSWORD": "ab"}
    cfg = load_config_text(CONFIG, env)
    dump = masked_config(cfg)
    assert dump["sinks"]["kafka"]["auth"]["password"] == MASK
    assert dump["sinks"]["kafka"]["auth"]["username"] == "alice"
    assert dump["sinks"]["kafka"]["librdkafka_options"] == {"ssl.key.password": MASK, "client.rack": "rack-1"}
    assert "s3cr3t-pass" not in repr(dump) and "key-pass-123" not in repr(dump)
    values = secret_values(cfg, env)
    assert set(values) == {"s3cr3t-pass", "key-pass-123", "tok-abcdef"}  # "ab" is too short to scrub


def test_scrubber_masks_values_also_as_json_shows_them() -> None:
    s = SecretScrubber(['pa"ss\\word', "hunter22"])
    assert s.text("auth with hunter22 failed") == f"auth with {MASK} failed"
    assert s.text('{"m": "pa\\"ss\\\\word"}') == f'{{"m": "{MASK}"}}'
    assert s.data(b"x hunter22 y") == f"x {MASK} y".encode()
    assert SecretScrubber(["abc"]).text("abc") == "abc"  # shorter than MIN_SECRET_LENGTH


def test_a_bad_secret_value_is_not_echoed_in_the_error() -> None:
    text = "sinks:\n  kafka:\n    auth: {enabled: true, username: alice, password: 98765432}\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, {})
    assert "sinks.kafka.auth.password" in str(info.value)
    assert "98765432" not in str(info.value)


def test_other_bad_values_are_still_shown() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("sinks:\n  kafka:\n    compression: brotli\n", {})
    assert "(got 'brotli')" in str(info.value)
