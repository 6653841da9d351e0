"""``log-capturer dlq list | stats | replay | purge``: the local dead-letter store from the shell.

The commands work on the directory of ``dispatcher.dlq_config`` in ``--config``
(or ``--dir``), beside a running agent or without one: every change is made
under the store's lock, and a replay holds the replay lock, so the agent's
reprocessor and a command never send the same entry at once.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from log_capturer.config import ConfigError, load_config
from log_capturer.config.schema import Config, parse_duration
from log_capturer.reliability.dlq.replay import ProducerTarget, ReplayBusy, replay_entries, replay_lock
from log_capturer.reliability.dlq.store import DeadLetterStore, DLQWriteError, parse_iso
from log_capturer.sinks.elasticsearch.sink import SINK_NAME as ELASTICSEARCH_SINK
from log_capturer.sinks.local_file.sink import SINK_NAME as LOCAL_FILE_SINK
from log_capturer.sinks.loki.sink import SINK_NAME as LOKI_SINK

dlq_app = typer.Typer(help="The local dead-letter queue: inspect, replay, purge.", no_args_is_help=True)

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The agent's config.yaml.")]
DirOpt = Annotated[
    Path | None, typer.Option("--dir", help="DLQ directory (default: dispatcher.dlq_config.directory).")
]
ReasonOpt = Annotated[
    str | None, typer.Option("--reason", help="Only entries with this error_type (e.g. message_too_large).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]

#: Sinks whose parked entries only the running agent replays (to their own files or servers:
#: ``dlq replay`` would send them to Kafka, under their index or file name as the topic).
AGENT_REPLAYED = frozenset({LOCAL_FILE_SINK, ELASTICSEARCH_SINK, LOKI_SINK})


def _config(config: Path) -> Config:
    try:
        return load_config(config)
    except ConfigError as exc:
        err.print(f"[bold red]{escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(2) from None


def _store(config: Path, directory: Path | None) -> tuple[Config, DeadLetterStore]:
    cfg = _config(config)
    dlq_cfg = cfg.dispatcher.dlq_config
    if directory is not None:
        dlq_cfg = dlq_cfg.model_copy(update={"directory": str(directory)})
    return cfg, DeadLetterStore(dlq_cfg)


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[bold red]{exc}[/]", highlight=False)
    return typer.Exit(1)


@dlq_app.command("stats")
def dlq_stats(
    config: ConfigOpt = Path("configs/config.yaml"), directory: DirOpt = None, as_json: JsonOpt = False
) -> None:
    """Entries, size, reasons, and what is due for reprocessing."""
    _, store = _store(config, directory)
    try:
        stats = store.stats()
    except DLQWriteError as exc:
        raise _fail(exc) from None
    if as_json:
        out.print_json(json.dumps(stats))
        return
    limits = stats["limits"]
    out.print(f"[bold]{stats['directory']}[/]")
    out.print(
        f"  {stats['entries']:,} entries in {stats['segments']} files, "
        f"{stats['size_bytes'] / 1048576:.2f} MiB "
        f"(limits: {limits['max_size_mb']} MiB, {limits['max_files']} files, "
        f"{limits['retention_days']} days, when full: {limits['when_full']})"
    )
    out.print(
        f"  due for reprocessing: {stats['due_for_reprocessing']:,}; out of automatic retries: "
        f"{stats['exhausted']:,}"
    )
    if stats["oldest_entry"]:
        out.print(f"  oldest {stats['oldest_entry']}, newest {stats['newest_entry']}")
    for reason, n in sorted(stats["by_reason"].items(), key=lambda kv: -kv[1]):
        out.print(f"  {reason}: {n:,}")
    if stats["corrupt_lines"]:
        out.print(f"  [yellow]{stats['corrupt_lines']} unreadable lines (kept)[/]")


@dlq_app.command("list")
def dlq_list(
    config: ConfigOpt = Path("configs/config.yaml"),
    directory: DirOpt = None,
    reason: ReasonOpt = None,
    limit: Annotated[int, typer.Option(help="Most entries shown (0 = all).")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The entries, oldest first (--json: one entry per line, as stored)."""
    _, store = _store(config, directory)
    try:
        entries = store.select(due_only=False, reason=reason, limit=limit or None)
    except DLQWriteError as exc:
        raise _fail(exc) from None
    if as_json:
        for doc in entries:
            sys.stdout.write(json.dumps(doc) + "\n")
        return
    table = Table("entry_id", "parked", "error_type", "topic", "attempts", "next", "error / message")
    for doc in entries:
        original = doc.get("original_entry", {})
        message = str(original.get("message", original.get("raw", "")))  # raw: a raw or logfmt record
        table.add_row(
            str(doc.get("entry_id", ""))[:12],
            str(doc.get("timestamp", ""))[:19],
            str(doc.get("error_type", "")),
            str(doc.get("topic", "")),
            str(doc.get("reprocess_attempts", 0)),
            str(doc.get("next_reprocess_time", ""))[:19],
            f"{str(doc.get('error_message', ''))[:60]}\n{message[:60]!r}",
        )
    out.print(table)


@dlq_app.command("replay")
def dlq_replay(
    config: ConfigOpt = Path("configs/config.yaml"),
    directory: DirOpt = None,
    reason: ReasonOpt = None,
    due: Annotated[
        bool, typer.Option("--due", help="Only entries due (as the automatic reprocessing would).")
    ] = False,
    limit: Annotated[int, typer.Option(help="Most entries replayed (0 = all).")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Kafka per batch.")] = 60.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on a terminal).")] = True,
) -> None:
    """Send parked entries to their topics (with the config's sinks.kafka settings, headers
    included); delivered entries leave the store. Every entry by default, also those automatic
    reprocessing gave up on (--due, --reason and --limit narrow it). Entries without a topic
    (records a source rejected, such as HTTP ingest's invalid_record) are never replayed: read
    them with `dlq list`, remove them with `dlq purge`. Entries the local_file, elasticsearch or
    loki sink parked are left to the running agent's reprocessing (POST /dlq/reprocess?all=true),
    which sends them to that sink (Elasticsearch documents keep their _id). Exit 1 if some
    could not be delivered."""
    cfg, store = _store(config, directory)
    try:
        with replay_lock(store):
            entries = store.select(due_only=due, reason=reason, limit=limit or None, replayable=True)
            # The local file, Elasticsearch and Loki sinks' entries go back to their files and
            # servers: the running agent replays them.
            left = Counter(
                str(e.get("failed_sink")) for e in entries if e.get("failed_sink") in AGENT_REPLAYED
            )
            entries = [e for e in entries if e.get("failed_sink") not in AGENT_REPLAYED]
            if left:
                listed = ", ".join(f"{n:,} of {sink}" for sink, n in sorted(left.items()))
                out.print(
                    f"left to the running agent ({listed}): it replays them to their own sink "
                    "(POST /dlq/reprocess?all=true)"
                )
            if not entries:
                out.print("nothing to replay")
                return
            target = ProducerTarget(cfg.sinks.kafka)
            batch = cfg.dispatcher.dlq_config.reprocessing_config.batch_size
            try:
                result = _with_bar(
                    len(entries),
                    progress and err.is_terminal,
                    lambda advance: replay_entries(
                        store, target, entries, batch_size=batch, timeout=timeout, progress=advance
                    ),
                )
            finally:
                target.close()
    except (ReplayBusy, DLQWriteError) as exc:
        raise _fail(exc) from None
    out.print(
        f"replayed {result.attempted:,} entries: {result.delivered:,} delivered, {result.failed:,} failed"
    )
    for text, n in result.errors.most_common(5):
        out.print(f"  {n:,} x {text}")
    if result.failed:
        raise typer.Exit(1)


def _with_bar(total: int, show: bool, run: Callable[[Callable[[int], None]], Any]) -> Any:
    if not show:
        return run(lambda _n: None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    ) as bar:
        task = bar.add_task("replay", total=total)
        return run(lambda n: bar.advance(task, n))


@dlq_app.command("purge")
def dlq_purge(
    config: ConfigOpt = Path("configs/config.yaml"),
    directory: DirOpt = None,
    reason: ReasonOpt = None,
    older_than: Annotated[
        str | None, typer.Option(help="Only entries parked longer ago than this (e.g. '2d', '12h').")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete entries for good (all of them, or those matching --reason / --older-than)."""
    _, store = _store(config, directory)
    cutoff = None
    if older_than is not None:
        try:
            cutoff = time.time() - parse_duration(older_than)
        except ValueError as exc:
            raise _fail(exc) from None

    def doomed(doc: dict[str, Any]) -> bool:
        if reason is not None and doc.get("error_type") != reason:
            return False
        return cutoff is None or parse_iso(str(doc.get("timestamp", ""))) < cutoff

    try:
        count = sum(1 for _, doc in store.read() if doomed(doc))
        if not count:
            out.print("nothing to purge")
            return
        if not yes and not typer.confirm(f"delete {count:,} DLQ entries for good?", err=True):
            raise typer.Exit(1)
        removed = store.remove(lambda doc: not doomed(doc), "purged")
    except DLQWriteError as exc:
        raise _fail(exc) from None
    out.print(f"purged {removed:,} entries")
