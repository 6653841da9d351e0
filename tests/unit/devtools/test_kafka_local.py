"""Cluster ids and segment-dump parsing of the local Kafka (no broker started)."""

from __future__ import annotations

import re
import socket

from log_capturer.devtools import kafka_local
from log_capturer.devtools.kafka_local import StoredBatch, new_cluster_id, parse_batches


def test_cluster_ids_are_base64url_uuids_never_starting_with_a_dash() -> None:
    # One id in 64 would start with '-' and break `kafka-storage format -t <id>`.
    ids = {new_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cid) for cid in ids)


#: DumpLogSegments output of Kafka 4.1.1 (two partitions; an idempotent and a plain producer).
DUMP = """\
Dumping /tmp/k/node-1/data/t1-logs-high-priority-0/00000000000000000000.log
Log starting offset: 0
baseOffset: 0 lastOffset: 16 count: 17 baseSequence: 0 lastSequence: 16 producerId: 0 producerEpoch: 0 \
partitionLeaderEpoch: 0 isTransactional: false isControl: false deleteHorizonMs: OptionalLong.empty \
position: 0 CreateTime: 1796191246555 size: 1069 magic: 2 compresscodec: zstd crc: 2192774843 isvalid: true
baseOffset: 17 lastOffset: 49 count: 33 baseSequence: 17 lastSequence: 49 producerId: 0 producerEpoch: 0 \
partitionLeaderEpoch: 0 isTransactional: false isControl: false deleteHorizonMs: OptionalLong.empty \
position: 1069 CreateTime: 1796191246595 size: 1591 magic: 2 compresscodec: zstd crc: 646352133 isvalid: true
Dumping /tmp/k/node-1/data/t1-logs-high-priority-10/00000000000000000000.log
Log starting offset: 0
baseOffset: 0 lastOffset: 0 count: 1 baseSequence: -1 lastSequence: -1 producerId: -1 producerEpoch: -1 \
partitionLeaderEpoch: 0 isTransactional: false isControl: false deleteHorizonMs: OptionalLong.empty \
position: 0 CreateTime: 1796191246600 size: 80 magic: 2 compresscodec: none crc: 1 isvalid: true
"""


def test_segment_dumps_are_parsed_into_batches_per_partition() -> None:
    assert parse_batches(DUMP) == [
        StoredBatch(0, 0, 17, 0, 0, "zstd"),
        StoredBatch(0, 17, 33, 0, 17, "zstd"),
        StoredBatch(10, 0, 1, -1, -1, "none"),
    ]
    assert parse_batches("") == []


def test_free_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    lo, hi = kafka_local.ephemeral_ports()
    assert 0 < lo <= hi <= 65535
    ports = {kafka_local.free_port() for _ in range(50)}
    assert all(kafka_local.LOWEST_PORT <= p < lo for p in ports), sorted(ports)
    assert len(ports) > 1  # drawn, not one fixed port
    for p in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", p))
