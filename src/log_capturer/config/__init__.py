"""Configuration: the schema (``schema``, put together from the agent's sections and the
component registry), the shared types (``base``) and the YAML loader (``loader``).

The names below are loaded on first use, so that a component's config module can import
``log_capturer.config.base`` without pulling in the whole schema (which imports it back).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "ConfigError": "loader",
    "config_warnings": "loader",
    "load_config": "loader",
    "load_config_text": "loader",
    "Config": "schema",
    "KafkaSinkConfig": "schema",
    "parse_duration": "schema",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"log_capturer.config.{module}"), name)
