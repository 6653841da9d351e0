"""Where documents go, on the real OpenSearch node: daily indices from the records' event times,
a data stream (op_type create), an ingest pipeline, the index from a label with its fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from log_capturer.devtools.opensearch_local import LocalOpenSearch
from log_capturer.pipeline.checkpoints import Checkpoint
from log_capturer.record import Chunk, Origin
from tests.conformance.harness_elasticsearch import ElasticsearchHarness, read_index
from tests.conformance.test_sink_conformance import Rig
from tests.support import wait_until

pytestmark = pytest.mark.integration

DAY = 86_400 * 10**9


def ship(rig: Rig, chunks: list[Chunk]) -> None:
    for chunk in chunks:
        assert rig.dispatcher.submit(chunk, Checkpoint(), timeout=60)
    rig.submitted(chunks)
    wait_until(lambda: all(c.done for c in rig.chunks), 60, "every line acknowledged")
    assert not rig.parked(), rig.parked()[:1]


def stamped(lines: list[str], stamps: list[int], origin: Origin | None = None) -> Chunk:
    chunk = Chunk(origin or Origin("http", "client"), lines)
    chunk.timestamps = stamps
    return chunk


def test_daily_indices_follow_each_record_s_event_time(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    with Rig(harness, tmp_path, {"index": f"{harness.index}-%Y.%m.%d"}) as rig:
        ship(rig, [stamped(["day one", "day two", "day two again"], [0, DAY, DAY + 5])])
    one = read_index(opensearch, f"{harness.index}-1970.01.01")
    two = read_index(opensearch, f"{harness.index}-1970.01.02")
    assert [d["message"] for d in one] == ["day one"]
    assert sorted(d["message"] for d in two) == ["day two", "day two again"]
    assert one[0]["@timestamp"] == "1970-01-01T00:00:00.000000000Z"


def test_a_data_stream_takes_the_documents_and_a_replay_makes_no_second_one(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    stream = f"{harness.index}-ds"
    code, body = opensearch.request(
        "PUT",
        f"/_index_template/{stream}",
        {"index_patterns": [stream], "data_stream": {}, "template": {"settings": {"number_of_replicas": 0}}},
    )
    assert code == 200, body
    lines = [f"streamed {i}" for i in range(30)]
    end = sum(len(s) + 1 for s in lines)
    with Rig(harness, tmp_path, {"index": stream, "op_type": "create"}) as rig:
        ship(rig, [Chunk(Origin("file", "/var/log/ds.log"), lines, 0, end)])
        # The same lines read again from the same place (a restart): the same ids, nothing new.
        ship(rig, [Chunk(Origin("file", "/var/log/ds.log"), lines, 0, end)])
        existing = rig.sink.stats()["items_existing"]
    code, info = opensearch.request("GET", f"/_data_stream/{stream}")
    assert code == 200 and info["data_streams"][0]["name"] == stream, info
    docs = read_index(opensearch, stream)
    assert sorted(d["message"] for d in docs) == sorted(lines)
    assert existing == 30


def test_an_ingest_pipeline_runs_on_every_document(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    pipeline = f"{harness.index}-tag"
    code, body = opensearch.request(
        "PUT",
        f"/_ingest/pipeline/{pipeline}",
        {"processors": [{"set": {"field": "shipped_by", "value": "agent"}}]},
    )
    assert code == 200, body
    with Rig(harness, tmp_path, {"pipeline": pipeline}) as rig:
        ship(rig, [Chunk(Origin("file", "p"), ["a", "b"], 0, 4)])
    docs = read_index(opensearch, harness.index)
    assert sorted(d["message"] for d in docs) == ["a", "b"]
    assert {d["shipped_by"] for d in docs} == {"agent"}
    opensearch.request("DELETE", f"/_ingest/pipeline/{pipeline}")


def test_the_index_from_a_label_and_the_fallback(
    harness: ElasticsearchHarness, opensearch: LocalOpenSearch, tmp_path: Path
) -> None:
    team = f"{harness.index}-payments"
    with Rig(harness, tmp_path, {"index_field": "labels.team"}) as rig:
        ship(
            rig,
            [
                Chunk(Origin("file", "a", {"team": team}), ["to the team"], 0, 12),
                Chunk(Origin("file", "b", {"team": "Not A Valid Index"}), ["to the fallback"], 0, 16),
                Chunk(Origin("file", "c"), ["no label"], 0, 9),
            ],
        )
    assert [d["message"] for d in read_index(opensearch, team)] == ["to the team"]
    assert sorted(d["message"] for d in read_index(opensearch, harness.index)) == [
        "no label",
        "to the fallback",
    ]
