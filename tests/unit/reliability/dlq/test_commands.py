"""``log-capturer dlq replay``: what it sends to Kafka and what it leaves to the running agent."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from log_capturer.cli import app
from log_capturer.reliability.config import DispatcherDLQConfig
from log_capturer.reliability.dlq.store import DeadLetterStore, DLQEntry


def test_replay_leaves_the_entries_of_the_elasticsearch_loki_and_local_file_sinks_to_the_agent(
    tmp_path: Path,
) -> None:
    """Their topic is an index, a stream or a file name: sent to Kafka they would leave the store
    without reaching their sink. The Kafka sink's brokers here are a port nobody listens on: the
    command must not need them."""
    dlq = tmp_path / "dlq"
    store = DeadLetterStore(DispatcherDLQConfig(directory=str(dlq)))
    record = {"message": "m", "fields": {"kafka": {"topic": "logs", "partition": 0, "offset": 7}}}
    store.park(
        [
            DLQEntry(
                record, "refused", "send_error", "elasticsearch_sink", topic="logs-2026.12.06", key="id7"
            ),
            DLQEntry(record, "away", "timeout", "loki_sink", topic="loki"),
            DLQEntry(record, "disk full", "send_error", "local_file_sink", topic="out.log"),
        ]
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "dispatcher": {"dlq_config": {"directory": str(dlq)}},
                "positions": {"directory": str(tmp_path / "positions")},
                "sinks": {"kafka": {"enabled": False, "brokers": ["127.0.0.1:1"]}},
            }
        )
    )
    result = CliRunner().invoke(app, ["dlq", "replay", "-c", str(config), "--no-progress", "--timeout", "2"])
    assert result.exit_code == 0, result.output
    assert "nothing to replay" in result.output
    text = " ".join(result.output.split())
    assert "1 of elasticsearch_sink, 1 of local_file_sink, 1 of loki_sink" in text, text
    kept = store.select(due_only=False)
    assert sorted(e["failed_sink"] for e in kept) == ["elasticsearch_sink", "local_file_sink", "loki_sink"]
    assert next(e for e in kept if e["failed_sink"] == "elasticsearch_sink")["key"] == "id7"
