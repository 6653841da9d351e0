"""Load ``config.yaml``: YAML, ``${VAR}`` interpolation, env overrides, then validation.

Errors are collected, not raised one at a time: :class:`ConfigError` carries
every problem, each naming the dotted key and what would fix it.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from log_capturer.config.schema import Config
from log_capturer.config.secrets import is_secret_key

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists each one as 'key: what is wrong and the fix'."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}:\n" + "\n".join(f"  - {p}" for p in problems))


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; unset variables become ''."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    return value


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "KAFKA_BROKERS": ("sinks", "kafka", "brokers"),
    "KAFKA_USERNAME": ("sinks", "kafka", "auth", "username"),
    "KAFKA_PASSWORD": ("sinks", "kafka", "auth", "password"),
    "KAFKA_COMPRESSION": ("sinks", "kafka", "compression"),
    "KAFKA_BATCH_SIZE": ("sinks", "kafka", "batch_size"),
}


def apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Apply the design document's environment overrides on top of the file's values."""
    for var, path in ENV_OVERRIDES.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        value: Any = raw
        if var == "KAFKA_BROKERS":
            value = [b.strip() for b in raw.split(",") if b.strip()]
        node = data
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[path[-1]] = value
    return data


def _describe(err: Mapping[str, Any], root: type[BaseModel]) -> str:
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, loc[:-1])
        hint = ""
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        if close:
            hint = f" Did you mean '{'.'.join([*loc[:-1], close[0]])}'?"
        return f"{key}: unknown key.{hint} Allowed here: {', '.join(sorted(allowed))}"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    given = err.get("input")
    hidden = isinstance(given, dict | list) or given is None or any(is_secret_key(p) for p in loc)
    shown = "" if hidden else f" (got {given!r})"
    return f"{key}: {msg}{shown}"


def _allowed_keys(model: type[BaseModel], path: list[str]) -> list[str]:
    current: Any = model
    for part in path:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = fields[part].annotation
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def validate(data: Any, source: str = "") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["(top level): the file must be a YAML mapping of sections"], source)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e, Config) for e in exc.errors()]
        raise ConfigError(problems, source) from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate, override and validate a config file."""
    env = os.environ if env is None else env
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read the config file: {exc.strerror}"], str(p)) from None
    return load_config_text(text, env, str(p))


def load_config_text(text: str, env: Mapping[str, str] | None = None, source: str = "") -> Config:
    env = os.environ if env is None else env
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source) from None
    if isinstance(data, dict):
        data = apply_env_overrides(interpolate(data, env), env)
    return validate(data, source)
