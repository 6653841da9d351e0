from __future__ import annotations

from collections import Counter

import pytest

from log_capturer.processing.pipelines.redact import BUILTINS, Redactor, luhn_ok
from log_capturer.processing.pipelines.spec import RedactSpec
from tests.unit.processing.pipelines.support import pipeline, run


def redact(text: str, **spec: object) -> tuple[str, Counter[str]]:
    counts: Counter[str] = Counter()
    r = Redactor(RedactSpec.model_validate({"type": "redact", **spec}))
    return r.text(text, counts), counts


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("login user=ann password=hunter2 ok", "login user=ann password=[REDACTED] ok"),
        ('{"user":"ann","password":"hunter2"}', '{"user":"ann","password":"[REDACTED]"}'),
        ("db_passwd: 's3cr3t', retry", "db_passwd: '[REDACTED]', retry"),
        ("PWD=abc&next=1", "PWD=[REDACTED]&next=1"),
        ("api_key=AbCd1234 token=xyz", "api_key=[REDACTED] token=[REDACTED]"),
        ('"client_secret": "shh"', '"client_secret": "[REDACTED]"'),
        ("Authorization: Bearer abc.def-ghi_123", "Authorization: Bearer [REDACTED]"),
        ("auth Basic dXNlcjpwYXNz", "auth Basic [REDACTED]"),
        ("postgres://app:pa55w0rd@db:5432/x", "postgres://app:[REDACTED]@db:5432/x"),
        ("key AKIAIOSFODNN7EXAMPLE used", "key [REDACTED] used"),
        ("gh ghp_" + "a" * 36 + " end", "gh [REDACTED] end"),
        ("slack xoxb-1234567890-abcdef", "slack [REDACTED]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_nature-1 end",
            "jwt [REDACTED] end",
        ),
        ("card 4111 1111 1111 1111 charged", "card [REDACTED] charged"),
        ("card 4111-1111-1111-1111", "card [REDACTED]"),
        ("amex 378282246310005.", "amex [REDACTED]."),
    ],
)
def test_builtin_rules_mask_only_the_secret(line: str, expected: str) -> None:
    assert redact(line)[0] == expected


@pytest.mark.parametrize(
    "line",
    [
        "order 4111 1111 1111 1112 failed",  # fails the Luhn check
        "trace id 1234567890123456",  # starts with 1: no card network
        "bypass=yes compass: north",  # 'pass' inside other words
        "2026-11-25 12:00:00 user logged in from 10.0.0.1",
        "elapsed 12.4111111111111111 s",  # digits after a decimal point
        "token expired for user",  # no key=value
    ],
)
def test_builtin_rules_leave_ordinary_text_alone(line: str) -> None:
    assert redact(line)[0] == line


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("79927398713")
    assert not luhn_ok("79927398710")


def test_counts_per_rule() -> None:
    text, counts = redact("password=a password=b card 5555555555554444")
    assert text == "password=[REDACTED] password=[REDACTED] card [REDACTED]"
    assert counts == {"password": 2, "credit_card": 1}


def test_custom_patterns_with_and_without_a_secret_group() -> None:
    text, counts = redact(
        "ssn 123-45-6789 session=abcdef",
        builtins=[],
        patterns=[
            {"name": "ssn", "regex": r"\b\d{3}-\d{2}-\d{4}\b", "replacement": "***-**-****"},
            {"name": "session", "regex": r"session=(?P<secret>\w+)"},
        ],
    )
    assert text == "ssn ***-**-**** session=[REDACTED]"
    assert counts == {"ssn": 1, "session": 1}


def test_builtins_can_be_chosen_and_email_is_opt_in() -> None:
    assert redact("mail ann@example.com password=x")[0] == "mail ann@example.com password=[REDACTED]"
    assert redact("mail ann@example.com password=x", builtins=["email"])[0] == "mail [REDACTED] password=x"
    assert not BUILTINS["email"].default


def test_unknown_builtin_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown built-in rule 'passwords'"):
        RedactSpec.model_validate({"type": "redact", "builtins": ["passwords"]})


def test_redact_step_applies_to_the_shipped_message_and_to_fields() -> None:
    p = pipeline("    - type: json_parse\n    - type: redact\n      replacement: '***'\n")
    recs = run(
        p,
        [
            '{"user": "ann", "Password": 1234, "nested": {"api-key": "k", "note": "card 4111111111111111"},'
            ' "list": ["token=abc"]}'
        ],
    )
    rec = recs[0]
    assert rec["message"] == (
        '{"user": "ann", "Password": ***, "nested": {"api-key": "***", "note": "card ***"},'
        ' "list": ["token=***"]}'
    )
    assert rec["fields"]["Password"] == "***"
    assert rec["fields"]["nested"] == {"api-key": "***", "note": "card ***"}
    assert rec["fields"]["list"] == ["token=***"]
    assert p.redactions["key"] == 2


def test_redact_runs_even_when_an_earlier_step_failed() -> None:
    p = pipeline("    - type: json_parse\n    - type: redact\n")
    recs = run(p, ["not json password=hunter2"])
    assert recs[0]["message"] == "not json password=[REDACTED]"
    assert p.failures == {"0:json_parse": 1}
    assert p.redactions == {"password": 1}


def test_redact_selected_fields_only() -> None:
    p = pipeline(
        "    - type: logfmt_parse\n    - type: redact\n      message: false\n      fields: [note, password]\n"
    )
    recs = run(p, ["note=token=abc password=pw other=token=zzz"])
    rec = recs[0]
    assert rec["message"] == "note=token=abc password=pw other=token=zzz"
    assert rec["fields"] == {"note": "token=[REDACTED]", "password": "[REDACTED]", "other": "token=zzz"}
