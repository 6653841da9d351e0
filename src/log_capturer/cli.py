"""Command line: ``log-capturer run | validate | kafka ...``."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from log_capturer import __version__
from log_capturer.config import ConfigError, load_config

app = typer.Typer(
    help="SSW Logs Capture: tail log files and ship every line to Apache Kafka.",
    no_args_is_help=True,
    add_completion=False,
)
kafka_app = typer.Typer(
    help="A real local Apache Kafka (KRaft) broker for development and tests.", no_args_is_help=True
)
app.add_typer(kafka_app, name="kafka")

err = Console(stderr=True)
out = Console()

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Path to config.yaml.")]


def _load(config: Path):  # type: ignore[no-untyped-def]
    try:
        return load_config(config)
    except ConfigError as exc:
        err.print(f"[bold red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


@app.command()
def validate(config: ConfigOpt = Path("configs/config.yaml")) -> None:
    """Check a config file; print every problem (with the key and the fix) and exit non-zero."""
    _load(config)
    out.print(f"[green]{config}: valid[/]")


@app.command()
def run(
    config: ConfigOpt = Path("configs/config.yaml"),
    status: Annotated[bool, typer.Option(help="Print a live status line.")] = True,
) -> None:
    """Run the agent in the foreground until Ctrl-C or SIGTERM, then drain and exit."""
    from log_capturer.app import Agent, AgentError
    from log_capturer.observability.logs import setup_logging
    from log_capturer.observability.status import StatusLine

    cfg = _load(config)
    setup_logging(cfg.app.log_level, cfg.app.log_format, cfg.app.name, cfg.app.log_file)
    try:
        agent = Agent(cfg)
        agent.start()
    except AgentError as exc:
        err.print(f"[bold red]{exc}[/]")
        raise typer.Exit(2) from None
    line = StatusLine(agent, err) if status else None
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop_requested.is_set():
            return
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if line is not None:
        line.start()
    while not stop_requested.wait(0.5):
        pass
    if line is not None:
        line.stop()
    err.print("stopping: draining in-flight lines...")
    agent.stop()
    remaining = agent.kafka.outstanding if agent.kafka is not None else 0
    err.print(
        f"stopped; {remaining} lines unacknowledged (they will be re-read on restart)"
        if remaining
        else "stopped cleanly; every line read was acknowledged"
    )


# -- kafka ------------------------------------------------------------------------------------

WorkdirOpt = Annotated[
    Path | None,
    typer.Option("--workdir", help="Cluster directory (default: ~/.cache/log-capturer/cluster)."),
]


@kafka_app.command("up")
def kafka_up(
    nodes: Annotated[int, typer.Option(help="1 or 3 combined broker+controller nodes.")] = 1,
    port: Annotated[int, typer.Option(help="First broker port (nodes use port, port+1, ...).")] = 9092,
    workdir: WorkdirOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker.")] = 90.0,
    sasl: Annotated[
        bool, typer.Option(help="Add a SASL_PLAINTEXT listener (port+10): PLAIN, SCRAM-SHA-256/512.")
    ] = False,
    tls: Annotated[
        bool,
        typer.Option(help="Add TLS listeners: SSL (port+20), MTLS (port+30), BADHOST (port+40)."),
    ] = False,
) -> None:
    """Start a real Apache Kafka 4.x broker (KRaft) from Maven Central jars; idempotent."""
    from log_capturer.devtools.kafka_local import LocalKafka, LocalKafkaError

    if nodes not in (1, 3):
        err.print("--nodes must be 1 or 3")
        raise typer.Exit(2)
    try:
        k = LocalKafka(workdir, nodes=nodes, port=port, sasl=sasl, tls=tls, log=err.print)
        bootstrap = k.up(timeout)
    except LocalKafkaError as exc:
        err.print(f"[bold red]{exc}[/]", highlight=False)
        raise typer.Exit(1) from None
    out.print(bootstrap)
    state = k.load_state()
    if state is not None and (state.sasl or state.tls):
        err.print_json(json.dumps(k.security_info(state)))


@kafka_app.command("down")
def kafka_down(
    workdir: WorkdirOpt = None,
    purge: Annotated[bool, typer.Option(help="Also delete the cluster's data.")] = False,
) -> None:
    """Stop the local broker(s)."""
    from log_capturer.devtools.kafka_local import LocalKafka

    k = LocalKafka(workdir, log=err.print)
    state = k.load_state()
    if state is not None:
        k.nodes = len(state.nodes)
    ran = k.down(purge=purge)
    out.print("stopped" if ran else "not running")


@kafka_app.command("status")
def kafka_status(workdir: WorkdirOpt = None) -> None:
    """Report the local broker(s): state, bootstrap address, pids. Exit 1 unless up."""
    from log_capturer.devtools.kafka_local import LocalKafka

    st = LocalKafka(workdir).status()
    out.print_json(json.dumps(st))
    if st["state"] != "up":
        raise typer.Exit(1)


@kafka_app.command("create-topics")
def kafka_create_topics(
    bootstrap: Annotated[
        str | None, typer.Option(help="Bootstrap address (default: the local cluster).")
    ] = None,
    replication_factor: Annotated[int, typer.Option(help="Replicas per partition.")] = 1,
    min_insync_replicas: Annotated[int | None, typer.Option(help="Topic min.insync.replicas.")] = None,
    workdir: WorkdirOpt = None,
) -> None:
    """Create the five topics of the design document (idempotent)."""
    from log_capturer.devtools.kafka_local import LocalKafka
    from log_capturer.devtools.topics import create_topics

    if bootstrap is None:
        state = LocalKafka(workdir).load_state()
        bootstrap = state.bootstrap if state else "127.0.0.1:9092"
    try:
        results = create_topics(bootstrap, replication_factor, min_insync_replicas)
    except Exception as exc:
        err.print(f"[bold red]cannot create topics at {bootstrap}: {exc}[/]")
        raise typer.Exit(1) from None
    for r in results:
        out.print(f"{r.name:<22} partitions={r.partitions:<3} {r.detail}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
