"""Configuration: the pydantic schema and the YAML loader."""

from log_capturer.config.loader import ConfigError, config_warnings, load_config, load_config_text
from log_capturer.config.schema import Config, KafkaSinkConfig, parse_duration

__all__ = [
    "Config",
    "ConfigError",
    "KafkaSinkConfig",
    "config_warnings",
    "load_config",
    "load_config_text",
    "parse_duration",
]
