"""Routes: which sinks a source's lines go to (the top-level ``routes`` list).

A route matches a chunk's origin by source type, source id (shell-style patterns) and labels
(every one listed must be equal); the first route that matches names the sinks its lines go to.
Lines no route matches go to every enabled sink, which is also what happens without ``routes``.
A chunk is then acknowledged to its source once each sink it was routed to delivered or parked
it, so it expects ``lines x routed sinks`` acknowledgements.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Generic, TypeVar

from log_capturer.pipeline.config import RouteConfig
from log_capturer.record import Origin

S = TypeVar("S")

#: Distinct origins whose routing is remembered (HTTP ingest may bring many source ids).
CACHE_LIMIT = 10_000


def matches(route: RouteConfig, origin: Origin) -> bool:
    if route.source_types and origin.source_type not in route.source_types:
        return False
    if route.source_ids and not any(fnmatch.fnmatchcase(origin.source_id, p) for p in route.source_ids):
        return False
    return all(origin.labels.get(k) == v for k, v in route.labels.items())


class Router(Generic[S]):
    """Chooses the sinks of an origin. ``sinks``: (section key, sink) of every running sink."""

    def __init__(self, routes: Sequence[RouteConfig], sinks: Sequence[tuple[str, S]]) -> None:
        self.all: tuple[S, ...] = tuple(s for _k, s in sinks)
        by_key = dict(sinks)
        self._routes = [(r, tuple(by_key[k] for k in r.sinks if k in by_key)) for r in routes]
        self._cache: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[S, ...]] = {}

    def sinks_for(self, origin: Origin) -> tuple[S, ...]:
        if not self._routes:
            return self.all
        key = (origin.source_type, origin.source_id, tuple(origin.labels.items()))
        found = self._cache.get(key)
        if found is None:
            found = next((sinks for r, sinks in self._routes if matches(r, origin)), self.all)
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return found
