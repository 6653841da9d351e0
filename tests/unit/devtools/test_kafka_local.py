"""Cluster ids of the local Kafka (no broker started)."""

from __future__ import annotations

import re

from log_capturer.devtools.kafka_local import new_cluster_id


def test_cluster_ids_are_base64url_uuids_never_starting_with_a_dash() -> None:
    # One id in 64 would start with '-' and break `kafka-storage format -t <id>`.
    ids = {new_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cid) for cid in ids)
