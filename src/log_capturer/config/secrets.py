"""Which configuration values are secrets, and how they are kept out of every output.

Two layers, so that a secret never reaches the agent's logs, ``/health``,
``/stats``, a configuration dump or an error message:

- by key: a value under a secret-named key (``password``, ``sasl.password``,
  ``ssl.key.pem``, ``client_secret``, ``token``...) is shown as ``***``
  (:func:`mask_secrets`, :func:`is_secret_key`);
- by value: the secrets the agent knows (the SASL password, secret-named
  ``librdkafka_options`` and secret-named environment variables such as
  ``KAFKA_PASSWORD``) are replaced by ``***`` wherever they appear in a log
  line or an API answer, whatever printed them (:class:`SecretScrubber`).
  Values shorter than :data:`MIN_SECRET_LENGTH` are not scrubbed by value,
  since masking them would mangle ordinary text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from log_capturer.config.schema import Config

MASK = "***"
MIN_SECRET_LENGTH = 4
_SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "private_key", "apikey", "api_key")
#: librdkafka properties holding key material or credentials inline.
_SECRET_PROPERTIES = frozenset({"ssl.key.pem", "ssl_key", "sasl.oauthbearer.config", "ssl.keystore.password"})
_SECRET_ENV = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIALS?|API_?KEY|PRIVATE_KEY)", re.I)


def is_secret_key(name: str) -> bool:
    """True for a key whose value must never be shown (config keys, librdkafka properties, log fields)."""
    low = name.lower()
    return low in _SECRET_PROPERTIES or low.endswith(".pem") or any(w in low for w in _SECRET_WORDS)


def mask_secrets(value: Any) -> Any:
    """``value`` with every entry under a secret-named key replaced by ``***`` (dicts and lists, deep)."""
    if isinstance(value, Mapping):
        return {k: (MASK if is_secret_key(str(k)) else mask_secrets(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v) for v in value]
    return value


def masked_config(config: Config) -> dict[str, Any]:
    """The effective configuration as plain data, every secret shown as ``***``: safe to print or log."""
    dump: dict[str, Any] = mask_secrets(config.model_dump(mode="json"))
    return dump


def secret_values(config: Config | None, env: Mapping[str, str] | None = None) -> list[str]:
    """The secret strings this agent knows: configured credentials and secret-named environment values."""
    env = os.environ if env is None else env
    found: list[str] = []
    if config is not None:
        found.extend(_secrets_in(config))
    found.extend(v for k, v in env.items() if _SECRET_ENV.search(k))
    return sorted({s for s in found if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


def _secrets_in(value: Any) -> Iterator[str]:
    """Every secret value of a config, whatever component it belongs to: the values of SecretStr
    fields, and of secret-named keys of free-form mappings (``librdkafka_options``)."""
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for key in type(value).model_fields:
            yield from _secrets_in(getattr(value, key))
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if is_secret_key(str(k)) and isinstance(v, str | int | float):
                yield str(v)
            else:
                yield from _secrets_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _secrets_in(v)


class SecretScrubber:
    """Replaces known secret values in text (longest first, so one secret inside another is masked whole)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        merged = set(self.secrets)
        for s in secrets:
            if len(s) >= MIN_SECRET_LENGTH:
                # Also the form a JSON document (a log line, an API answer) shows it in.
                merged |= {s, orjson.dumps(s).decode()[1:-1]}
        self.secrets = sorted(merged, key=len, reverse=True)

    def text(self, s: str) -> str:
        for secret in self.secrets:
            if secret in s:
                s = s.replace(secret, MASK)
        return s

    def data(self, b: bytes) -> bytes:
        for secret in self.secrets:
            raw = secret.encode()
            if raw in b:
                b = b.replace(raw, MASK.encode())
        return b
