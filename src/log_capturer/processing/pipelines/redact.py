"""Masking secrets in text and fields: built-in rules plus custom regular expressions.

A rule masks its whole match, or only the groups whose name starts with
``secret`` when it has any (so ``password=hunter2`` becomes
``password=[REDACTED]``). Card numbers are masked only when they pass the Luhn
check. Field values under secret-looking keys (``password``, ``token``...) are
masked whole, whatever their type.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from log_capturer.processing.pipelines.spec import RedactSpec

_VALUE = r"""(?:"(?P<secret_dq>[^"]*)"|'(?P<secret_sq>[^']*)'|(?P<secret>[^\s,;&"'}\]]+))"""
_KEY_END = r"""(?![A-Za-z0-9])["']?\s*[:=]\s*"""


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> bool:
    digits = re.sub(r"[ -]", "", match.group(0))
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


@dataclass(frozen=True)
class Builtin:
    pattern: str
    doc: str
    #: Lower-case substrings one of which must occur for the rule to run (cheap pre-check).
    hints: tuple[str, ...] = ()
    check: Callable[[re.Match[str]], bool] | None = None
    default: bool = True


BUILTINS: dict[str, Builtin] = {
    "password": Builtin(
        r"(?i)(?<![A-Za-z0-9])(?:password|passwd|passphrase|pwd)" + _KEY_END + _VALUE,
        "values of password, passwd, pwd... in key=value, key: value and JSON",
        ("pass", "pwd"),
    ),
    "secret": Builtin(
        r"(?i)(?<![A-Za-z0-9])(?:api[_-]?key|access[_-]?key|secret[_-]?key|client[_-]?secret|secret"
        r"|(?:access|refresh|auth|id)[_-]?token|token|private[_-]?key)" + _KEY_END + _VALUE,
        "values of token, secret, api_key, access_key, client_secret... keys",
        ("key", "secret", "token"),
    ),
    "authorization": Builtin(
        r"(?i)\b(?:bearer|basic)\s+(?P<secret>[A-Za-z0-9._~+/-]{8,}=*)",
        "the credentials after 'Bearer' or 'Basic'",
        ("bearer", "basic"),
    ),
    "jwt": Builtin(
        r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
        "JSON Web Tokens",
        ("eyj",),
    ),
    "url_credentials": Builtin(
        r"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/@]+:(?P<secret>[^\s@/]+)@",
        "the password in scheme://user:password@host",
        ("://",),
    ),
    "aws_access_key": Builtin(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "AWS access key ids", ("akia", "asia")),
    "github_token": Builtin(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b", "GitHub tokens", ("gh",)),
    "slack_token": Builtin(r"\bxox[abposr]-[A-Za-z0-9-]{10,}", "Slack tokens", ("xox",)),
    "credit_card": Builtin(
        r"(?<![\d.,-])[2-6]\d(?:[ -]?\d){11,17}(?![\d])",
        "card numbers of 13-19 digits (spaces or dashes allowed) that pass the Luhn check",
        check=_card,
    ),
    "email": Builtin(
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
        "e-mail addresses (opt-in: list it in builtins)",
        ("@",),
        default=False,
    ),
}

DEFAULT_KEYS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "access_key",
        "secret_key",
        "access_token",
        "refresh_token",
        "auth_token",
        "id_token",
        "client_secret",
        "private_key",
        "authorization",
        "cookie",
        "set_cookie",
    }
)


class Rule:
    __slots__ = ("check", "hints", "name", "regex", "replacement", "secret_groups")

    def __init__(
        self,
        name: str,
        pattern: str,
        replacement: str,
        hints: tuple[str, ...] = (),
        check: Callable[[re.Match[str]], bool] | None = None,
    ) -> None:
        self.name = name
        self.regex = re.compile(pattern)
        self.replacement = replacement
        self.hints = hints
        self.check = check
        self.secret_groups = [g for g in self.regex.groupindex if g.startswith("secret")]

    def apply(self, text: str, lower: str) -> tuple[str, int]:
        if self.hints and not any(h in lower for h in self.hints):
            return text, 0
        count = 0

        def sub(m: re.Match[str]) -> str:
            nonlocal count
            if self.check is not None and not self.check(m):
                return m.group(0)
            count += 1
            spans = [m.span(g) for g in self.secret_groups if m.group(g) is not None]
            if not spans:
                return self.replacement
            whole = m.group(0)
            base = m.start()
            out, pos = [], 0
            for start, end in sorted(spans):
                out.append(whole[pos : start - base])
                out.append(self.replacement)
                pos = end - base
            out.append(whole[pos:])
            return "".join(out)

        return self.regex.sub(sub, text), count


class Redactor:
    """Applies a ``redact`` step's rules to text and to nested field values."""

    def __init__(self, spec: RedactSpec) -> None:
        names = spec.builtins if spec.builtins is not None else [n for n, b in BUILTINS.items() if b.default]
        self.rules = [
            Rule(n, BUILTINS[n].pattern, spec.replacement, BUILTINS[n].hints, BUILTINS[n].check)
            for n in names
        ]
        self.rules += [
            Rule(p.name, p.regex, p.replacement if p.replacement is not None else spec.replacement)
            for p in spec.patterns
        ]
        self.replacement = spec.replacement
        keys = spec.keys if spec.keys is not None else DEFAULT_KEYS
        self.keys = frozenset(_norm_key(k) for k in keys)

    def text(self, text: str, counts: Counter[str]) -> str:
        lower = text.lower()
        for rule in self.rules:
            new, n = rule.apply(text, lower)
            if n:
                counts[rule.name] += n
                text = new
                lower = text.lower()
        return text

    def value(self, value: Any, counts: Counter[str]) -> Any:
        """``value`` with secrets masked: text redacted, secret-named members masked whole."""
        if isinstance(value, str):
            return self.text(value, counts)
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if _norm_key(k) in self.keys and v not in (None, ""):
                    counts["key"] += 1
                    out[k] = self.replacement
                else:
                    out[k] = self.value(v, counts)
            return out
        if isinstance(value, list):
            return [self.value(v, counts) for v in value]
        return value


def _norm_key(key: str) -> str:
    return key.lower().replace("-", "_")
