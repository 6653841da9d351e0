"""`priority_routing` as a consumer sees it: each level's lines in the topic the docs name, under the
names the configuration gives (``high_topic``, ``normal_topic``, ``low_topic``, ``topic``); with
``enabled: false``, every line in ``topic``."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from tests.integration.sinks.kafka.util import ship_lines
from tests.support import create_prefixed_topics

pytestmark = pytest.mark.integration

#: A level word -> the topic (by its default name) its lines go to with routing on.
ROUTES = {
    "ERROR": "logs-high-priority",
    "FATAL": "logs-high-priority",
    "CRITICAL": "logs-high-priority",
    "WARN": "logs-normal-priority",
    "INFO": "logs-normal-priority",
    "DEBUG": "logs-low-priority",
    "TRACE": "logs-low-priority",
    "": "logs",  # no level found
}


@pytest.mark.parametrize("enabled", [True, False], ids=["routing-on", "routing-off"])
def test_each_level_lands_in_its_priority_topic_or_all_in_topic_when_off(
    enabled: bool, tmp_path: Path, bootstrap: str, topic_prefix: str
) -> None:
    # The test's own topic names (prefixed), so the *_topic keys, not the defaults, decide.
    topics = create_prefixed_topics(bootstrap, topic_prefix)
    lines = [f"{word} line {i} of {word or 'no level'}".strip() for word in ROUTES for i in range(50)]
    section = {"priority_routing": {"enabled": enabled}}
    records, _ = ship_lines(tmp_path, bootstrap, topics, lines, sinks={"kafka": section})
    assert sorted(r.json()["message"] for r in records) == sorted(lines), "each line once"
    got: dict[str, set[str]] = defaultdict(set)
    for r in records:
        word = r.json()["level"].upper()
        assert r.json()["message"].startswith(word), r.json()
        got[word].add(r.topic)
    want = {word: {topics[ROUTES[word] if enabled else "logs"]} for word in ROUTES}
    assert dict(got) == want
    assert not any(r.topic == topics["logs-dlq"] for r in records)
