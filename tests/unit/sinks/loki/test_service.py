"""What Loki's answers say: Retry-After, and the age limit in a 'timestamp too old' error."""

from __future__ import annotations

import email.utils
import time

from log_capturer.sinks.loki.service import MAX_RETRY_AFTER, TIMESTAMP_ERROR, learned_max_age, retry_after


def test_retry_after_seconds_or_a_date_capped() -> None:
    assert retry_after(None) == 0.0
    assert retry_after("3") == 3.0
    assert retry_after("garbage") == 0.0
    assert retry_after("100000") == MAX_RETRY_AFTER
    soon = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= retry_after(soon) <= 10


def test_the_age_limit_is_read_from_lokis_message() -> None:
    text = (
        "entry for stream '{job=\"x\"}' has timestamp too old: 2024-01-01T00:00:00Z, "
        "oldest acceptable timestamp is: 2024-05-01T00:00:00Z"
    )
    assert TIMESTAMP_ERROR.search(text)
    now = 1714608000.0  # 2024-05-02T00:00:00Z
    assert learned_max_age(text, now) == 86400.0
    assert learned_max_age("some other error", now) is None
    assert TIMESTAMP_ERROR.search("entry out of order")
    assert not TIMESTAMP_ERROR.search("cannot read Loki protobuf data: too big request")
