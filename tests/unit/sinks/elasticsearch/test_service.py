"""Batching and outcomes of the service without a server (requests against real servers are in
tests/integration/sinks/elasticsearch and the conformance suite)."""

from __future__ import annotations

import gzip
import itertools
import random
import zlib

import pytest

from log_capturer.engine.contract import Failure, Record
from log_capturer.observability.metrics import Metrics
from log_capturer.sinks.elasticsearch import bulk
from log_capturer.sinks.elasticsearch.config import ElasticsearchSinkConfig
from log_capturer.sinks.elasticsearch.service import (
    ACTION_BYTES,
    ElasticsearchService,
    Part,
    _Batch,
    gzip_body,
)


def _service(max_events: int, max_bytes: int) -> ElasticsearchService:
    config = ElasticsearchSinkConfig(enabled=True, batch={"max_events": max_events, "max_bytes": max_bytes})
    return ElasticsearchService(config, Metrics(), None, "es")


def _docs(sizes: list[int]) -> bulk.Docs:
    return bulk.Docs("ix", [b"x" * n for n in sizes], [f"id{i}" for i in range(len(sizes))])


def _batches(svc: ElasticsearchService) -> list[_Batch]:
    out = []
    while not svc._requests.empty():
        b = svc._requests.get_nowait()
        assert b is not None
        out.append(b)
    return out


def _flat(batch: _Batch) -> list[tuple[int, int]]:
    """(part number, record index) of each record of a batch, in order."""
    return [(id(p.docs), i) for p in batch.parts for i in range(p.lo, p.hi)]


@pytest.mark.parametrize("seed", range(30))
def test_batches_hold_every_record_once_within_the_limits(seed: int) -> None:
    rng = random.Random(seed)
    max_events, max_bytes = rng.choice([1, 3, 10, 1000]), rng.choice([1024, 2000, 5000, 1 << 20])
    svc = _service(max_events, max_bytes)
    parts = []
    for _ in range(rng.randrange(1, 6)):
        docs = _docs([rng.choice([0, 10, 100, 900, 3000]) for _ in range(rng.randrange(1, 40))])
        parts.append(Part("new", None, 0.0, docs, 0, len(docs)))
    for part in parts:
        svc._add([part])
    svc._cut_now = True
    svc._cut_lingering(0.0)
    batches = _batches(svc)
    seen = [rec for b in batches for rec in _flat(b)]
    assert seen == [(id(p.docs), i) for p in parts for i in range(len(p))]  # every record once, in order
    assert svc._held == len(seen)
    for b in batches:
        sizes = [len(p.docs.values[i]) + ACTION_BYTES for p in b.parts if p.docs for i in range(p.lo, p.hi)]
        assert b.count == len(sizes) and b.nbytes == sum(sizes)
        assert 1 <= b.count <= max_events
        assert b.nbytes <= max_bytes or b.count == 1  # a record larger than max_bytes goes alone
    for b, nxt in itertools.pairwise(batches):
        # A batch left full: no more records, or the next record would not have fitted.
        first = nxt.parts[0]
        assert first.docs is not None
        assert b.count == max_events or b.nbytes + len(first.docs.values[first.lo]) + ACTION_BYTES > max_bytes


def test_a_retry_is_one_record_in_the_batch() -> None:
    svc = _service(3, 1 << 20)
    record = Record("ix", b'{"a":1}', "id")
    docs = _docs([5, 5])
    svc._add([Part("new", None, 0.0, docs, 0, 2), Part("attempt", None, 0.0, record=record)])
    (batch,) = _batches(svc)
    assert [len(p) for p in batch.parts] == [2, 1]
    body = b"".join(p.body("create", "", "") for p in batch.parts)
    assert body == bulk.body_py([*docs.records(), record], "create", "", "")


class _Owner:
    """A chunk's delivery: counts what is settled."""

    def __init__(self) -> None:
        self.n = 0

    def delivered(self, n: int = 1) -> None:
        self.n += n


class _Runner:
    """What the engine is told of failures."""

    def __init__(self) -> None:
        self.calls: list[tuple[Record, Failure, str]] = []

    def failed(self, d: object, record: Record, failure: Failure, etype: str, text: str) -> None:
        self.calls.append((record, failure, etype))


def test_an_answer_with_errors_settles_each_record_and_a_clean_part_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc = _service(1000, 1 << 20)
    runner = _Runner()
    monkeypatch.setattr(svc, "_runner", runner)
    owner_a, owner_b = _Owner(), _Owner()
    a, b = _docs([5, 5, 5]), _docs([7, 7])
    parts = [Part("new", owner_a, 0.0, a, 0, 3), Part("new", owner_b, 0.0, b, 0, 2)]
    svc._held = 5
    ok = {"create": {"status": 201}}
    bad = {"create": {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "no"}}}
    svc._items(parts, [ok, ok, ok, ok, bad])
    # The first part in one outcome; the second record by record.
    assert [(o[0] is parts[0], o[1], o[2]) for o in svc._outcomes] == [
        (True, -1, None),
        (False, 1, Failure.REJECT),
        (False, 0, None),
    ]
    svc._report_outcomes()
    assert owner_a.n == 3 and owner_b.n == 1
    assert runner.calls == [(b.record(1), Failure.REJECT, "mapper_parsing_exception")]
    assert svc._held == 0
    assert svc.items_rejected == 1


def test_a_refused_request_fails_every_record_of_its_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    svc = _service(1000, 1 << 20)
    runner = _Runner()
    monkeypatch.setattr(svc, "_runner", runner)
    owner = _Owner()
    docs = _docs([5, 6, 7, 8])
    svc._held = 3
    svc._report([Part("new", owner, 0.0, docs, 1, 4)], Failure.RETRY, "http_503", "busy")
    svc._report_outcomes()
    assert owner.n == 0
    assert runner.calls == [(docs.record(i), Failure.RETRY, "http_503") for i in (1, 2, 3)]
    assert svc._held == 0


@pytest.mark.parametrize("level", range(1, 10))
def test_gzip_bodies_are_gzip_at_every_level(level: int) -> None:
    data = b"".join(b'{"message":"line %d of the log"}\n' % i for i in range(3000))
    packed = gzip_body(data, level)
    assert gzip.decompress(packed) == data == zlib.decompress(packed, 31)
    assert len(packed) < len(data) // 4
