"""Load ``config.yaml``: YAML, ``${VAR}`` interpolation, env overrides, then validation.

Errors are collected, not raised one at a time: :class:`ConfigError` carries
every problem, each naming the dotted key and what would fix it
(:mod:`log_capturer.config.explain` words them).

Interpolation follows Docker Compose: ``${VAR}`` is the variable's value and an
error when it is unset; ``${VAR:-default}`` gives the default when VAR is unset or
empty, ``${VAR-default}`` only when it is unset; ``$$`` is a literal ``$``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from log_capturer.config.explain import Loc, decode_utf8, describe_all, key_of
from log_capturer.config.schema import Config
from log_capturer.config.secrets import is_secret_key

_REF = re.compile(
    r"\$\$"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
    r"|\$\{[^}]*\}?"
)


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists each one as 'key: what is wrong and the fix'.

    ``data`` is the file's mapping (interpolated, overrides applied) when it could be read, so
    ``validate`` can still check the pipelines file it names.
    """

    def __init__(self, problems: list[str], source: str = "", data: dict[str, Any] | None = None) -> None:
        self.problems = problems
        self.source = source
        self.data = data
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}:\n" + "\n".join(f"  - {p}" for p in problems))


def interpolate(value: Any, env: Mapping[str, str], problems: list[tuple[Loc, str]], loc: Loc = ()) -> Any:
    """Replace ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` and ``$$`` in every string.

    An unset variable without a default, or a malformed ``${``, is added to ``problems``
    (with the key it is under) rather than becoming an empty string.
    """
    if isinstance(value, str):
        return _REF.sub(lambda m: _substitute(m, env, problems, loc), value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, problems, (*loc, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, problems, (*loc, i)) for i, v in enumerate(value)]
    return value


def _substitute(m: re.Match[str], env: Mapping[str, str], problems: list[tuple[Loc, str]], loc: Loc) -> str:
    text = m.group(0)
    if text == "$$":
        return "$"
    name = m.group("name")
    key = key_of(loc)
    if name is None:
        shown = "a '${'" if any(is_secret_key(str(p)) for p in loc) else repr(text)
        problems.append(
            (
                loc,
                f"{key}: {shown} is not a variable reference; write ${{NAME}}, ${{NAME:-default}} or "
                "${NAME-default} (NAME: letters, digits and _), or $$ for a literal $",
            )
        )
        return text
    value = env.get(name)
    op = m.group("op")
    if (op == ":-" and not value) or (op == "-" and value is None):
        return m.group("default")
    if value is None:
        problems.append(
            (
                loc,
                f"{key}: ${{{name}}} is not set; set {name} in the environment, or give a default "
                f"in the file: ${{{name}:-value}}",
            )
        )
        return ""
    return value


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "KAFKA_BROKERS": ("sinks", "kafka", "brokers"),
    "KAFKA_USERNAME": ("sinks", "kafka", "auth", "username"),
    "KAFKA_PASSWORD": ("sinks", "kafka", "auth", "password"),
    "KAFKA_COMPRESSION": ("sinks", "kafka", "compression"),
    "KAFKA_BATCH_SIZE": ("sinks", "kafka", "batch_size"),
    "LOKI_USERNAME": ("sinks", "loki", "auth", "username"),
    "LOKI_PASSWORD": ("sinks", "loki", "auth", "password"),
    "LOKI_TOKEN": ("sinks", "loki", "auth", "token"),
    "ELASTICSEARCH_USERNAME": ("sinks", "elasticsearch", "auth", "username"),
    "ELASTICSEARCH_PASSWORD": ("sinks", "elasticsearch", "auth", "password"),
    "ELASTICSEARCH_API_KEY": ("sinks", "elasticsearch", "auth", "api_key"),
}


def apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Apply the design document's environment overrides on top of the file's values.

    Returns key path -> variable for each override applied, so that an error in one names the
    variable. A section the file gives as something other than a mapping is left alone (the
    schema reports it) rather than replaced.
    """
    applied: dict[tuple[str, ...], str] = {}
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
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = value
            applied[path] = var
    return applied


def validate(
    data: Any,
    source: str = "",
    origins: Mapping[tuple[str, ...], str] | None = None,
    unset: list[tuple[Loc, str]] | None = None,
) -> Config:
    """Validate parsed YAML; every problem (``unset``: those found by :func:`interpolate`) at once."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["(top level): the file must be a YAML mapping of sections"], source)
    early = unset or []
    problems = [p for _, p in early]
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        # A key whose ${VAR} is unset is reported once, as such, not again for the value it left.
        problems += describe_all(exc, Config, origins, skip=[loc for loc, _ in early])
    if problems:
        raise ConfigError(problems, source, data)
    return config


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate, override and validate a config file."""
    env = os.environ if env is None else env
    p = Path(path)
    try:
        text = decode_utf8(p.read_bytes())
    except OSError as exc:
        raise ConfigError([f"cannot read the config file: {exc.strerror}"], str(p)) from None
    except ValueError as exc:
        raise ConfigError([str(exc)], str(p)) from None
    return load_config_text(text, env, str(p))


def load_config_text(text: str, env: Mapping[str, str] | None = None, source: str = "") -> Config:
    env = os.environ if env is None else env
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source) from None
    if not isinstance(data, dict):
        return validate(data, source)
    unset: list[tuple[Loc, str]] = []
    data = interpolate(data, env, unset)
    origins = apply_env_overrides(data, env)
    # An overridden key's own ${VAR} does not matter: the variable's value replaced it.
    unset = [u for u in unset if not any(u[0][: len(path)] == path for path in origins)]
    return validate(data, source, origins, unset)


#: What ``required_acks: 0`` gives up; ``validate`` prints it and the agent logs it at start.
ACKS_0_WARNING = (
    "sinks.kafka.required_acks: 0: the broker confirms nothing, so a line is checkpointed as soon "
    "as it is sent, and lost if the broker never wrote it; set required_acks: -1 (every in-sync "
    "replica, idempotent) so that only lines the broker stored are checkpointed"
)


def config_warnings(config: Config) -> list[str]:
    """Valid settings that give up a guarantee the user may be counting on, or that are accepted
    for compatibility and do nothing, one message each."""
    kafka = config.sinks.kafka
    acks = [ACKS_0_WARNING] if kafka.enabled and kafka.required_acks == 0 else []
    return acks + config.ignored_settings()
