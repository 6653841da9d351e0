"""One benchmark run: fresh topics, the agent as a real process, the generator, a consumer, a ceiling.

Sequence: create fresh topics (the five of the design document plus one for
the ceiling, all with LogAppendTime) -> write the agent's config -> for the
rated scenarios start the agent on an empty file and run the generator into
it at the scenario's rate while the collector reads the topics live; for
``max`` write the whole file first, then start the agent and read the topics
once it is done -> stop the agent (SIGTERM, drain) -> run the ceiling on the
same file -> compute, write JSON and PNG, print the verdicts.

With ``source="http"`` the generator POSTs the lines to the agent's HTTP
ingest instead (one client, ``http_batch`` lines per request, NDJSON or
Fluent Bit's msgpack), always live (``max``: as fast as the agent answers);
there is no file, so no ceiling. With ``source="forward"`` it sends them over the
Fluent forward protocol as Fluent Bit's ``forward`` output does (one connection, Forward mode
messages of ``http_batch`` lines, CompressedPackedForward with ``forward_compress``, each
waiting for its ack as with ``Require_ack_response``, a few in flight); no ceiling either.
With ``source="otlp"`` it does the same to the agent's OTLP
input (``otlp`` section, ``POST /v1/logs``): protobuf ``ExportLogsServiceRequest`` bodies of
``http_batch`` log records, as the OpenTelemetry exporters send them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml
from rich.console import Console

from log_capturer.devtools.bench import report
from log_capturer.devtools.bench.ceiling import (
    CeilingResult,
    key_pattern,
    keyed_copy,
    run_ceiling,
    run_keyed_ceiling,
)
from log_capturer.devtools.bench.collect import Collector
from log_capturer.devtools.bench.profile import Profiler, summarize
from log_capturer.devtools.bench.system import (
    Sampler,
    get_json,
    get_text,
    load_average,
    machine_busy,
    machine_info,
    tree_cpu_seconds,
    tree_rss_mib,
    tree_thread_cpu,
)
from log_capturer.devtools.generate import DEFAULT_LEVELS, LineFactory
from log_capturer.devtools.kafka_local import free_port
from log_capturer.devtools.topics import TOPICS, TopicSpec, create_topics, delete_topics

if TYPE_CHECKING:
    from log_capturer.config.schema import Config


def by_thread(seconds: dict[str, float], lines: int) -> dict[str, float]:
    """CPU us a line of each thread name, largest first; names under 0.01 us left out."""
    if not lines:
        return {}
    per_line = ((name, round(s / lines * 1e6, 3)) for name, s in seconds.items())
    return dict(sorted(((n, us) for n, us in per_line if us >= 0.01), key=lambda kv: -kv[1]))


class BenchError(RuntimeError):
    """The benchmark could not run (no broker, the agent did not start...); the message says why."""


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: float  # lines/s; 0 = as fast as possible
    duration: float  # seconds
    about: str


#: The design document's load tests, plus a maximum-throughput run. ``max`` writes
#: duration x MAX_LINES_PER_SECOND lines (the target rate) before the agent starts.
SCENARIOS: dict[str, Scenario] = {
    "baseline": Scenario("baseline", 1_000, 300, "1,000 lines/s for 5 minutes"),
    "high": Scenario("high", 10_000, 300, "10,000 lines/s for 5 minutes"),
    "peak": Scenario("peak", 20_000, 120, "20,000 lines/s for 2 minutes"),
    "max": Scenario("max", 0, 10, "a file written in advance, shipped as fast as possible"),
}
MAX_LINES_PER_SECOND = 300_000
#: Topics no line is routed to: the DLQ, and the positions (``delivery: exactly_once``).
NOT_ROUTED = ("logs-dlq", "log-capturer-positions")


@dataclass
class BenchOptions:
    scenario: str = "baseline"
    duration: float | None = None
    lines: int | None = None
    acks: int = -1
    compression: str = "zstd"
    line_bytes: int = 150
    format: str = "json"
    levels: str = DEFAULT_LEVELS
    seed: int = 1
    #: Distinct tenant_id values the generator writes (None: its pool's 16).
    keys: int | None = None
    files: int = 1
    #: Agent processes (app.workers); None keeps the agent config's (1 unless --agent-config says).
    workers: int | None = None
    bootstrap: str = ""
    out_dir: Path = Path("bench-results")
    json_out: Path | None = None
    chart_out: Path | None = None
    agent_config: Path | None = None
    ceiling: str = "auto"  # auto | kcat | python | none
    #: Also run kcat with the agent's partitioning keys (ceiling.run_keyed_ceiling): a second,
    #: equal-work column beside the ceiling, for a run with partitioning.key_field.
    ceiling_keyed: bool = False
    #: Run the agent from this source tree (first on its PYTHONPATH, its C modules built in it):
    #: the code before a change, alternated with the code after it.
    agent_src: Path | None = None
    profile: bool = False
    stall_timeout: float = 60.0
    sample_interval: float = 0.5
    watch_pids: dict[str, int] = field(default_factory=dict)
    #: Keep the generated log files and the run's topics. Otherwise a run without loss,
    #: duplicates or agent failure deletes them (about 0.5 GB of files and as much in the broker
    #: per 3 million lines; repeated runs filled a 250 GB disk).
    keep: bool = False
    #: Where the agent reads the lines: ``file`` (tailing), ``http`` (HTTP ingest),
    #: ``forward`` (the forward protocol) or ``otlp`` (the OTLP input).
    source: str = "file"
    #: With source http: the body format (``ndjson`` or ``msgpack``) and lines per request (with
    #: source forward: lines per PackedForward message).
    http_format: str = "ndjson"
    http_batch: int = 1000
    #: With source forward: CompressedPackedForward (gzip) instead of Forward mode.
    forward_compress: bool = False
    #: With source forward: the records, ``fields`` ({log, level, labels}) or ``log`` ({log}).
    forward_record: str = "fields"
    #: With source http or otlp: requests outstanding at once (one keep-alive connection each, as
    #: the OpenTelemetry Collector's ``sending_queue.num_consumers``, 10 by default); with source
    #: forward: messages awaiting their ack at once. With rate 0 (``max``) every request or
    #: message is encoded before the run (the generator's ``--prepare``), so the client costs
    #: almost no CPU while it sends, as a client written in C or Go would.
    in_flight: int = 10


def default_agent_config() -> dict[str, Any]:
    """The tuning of configs/config.yaml (what ``make run`` uses); the bench fills in the rest."""
    return {
        "app": {"log_level": "info", "log_format": "json"},
        "files_config": {"include_patterns": ["*.log"], "read_from": "beginning", "rescan_interval": "1s"},
        "dispatcher": {
            "queue_size": 20000,
            "worker_count": 1,
            "batch_size": 500,
            "batch_timeout": "10s",
            "drain_timeout": "60s",
        },
        "sinks": {
            "kafka": {
                "enabled": True,
                "max_message_bytes": 1048576,
                "compression_level": 1,
                "batch_size": 10000,
                "batch_timeout": "20ms",
                "queue_size": 100000,
                "timeout": "30s",
                "retry_max": 3,
                "partitioning": {"enabled": True, "strategy": "hash", "key_field": "tenant_id"},
            }
        },
        "positions": {"enabled": True, "flush_interval": "2s"},
    }


def bench_files(logs: Path, count: int, workers: int) -> list[Path]:
    """``count`` file names that split as evenly as they can between ``workers`` workers.

    Files go to workers by a hash of their path, so with a few files and random
    names the split is often uneven (4 files on 2 workers: 3/1 or 4/0 half the
    time), and the run would measure that luck instead of the mode.
    """
    if workers <= 1:
        return [logs / f"bench-{i}.log" for i in range(count)]
    from log_capturer.workers.shard import shard_of

    room = [count // workers + (1 if w < count % workers else 0) for w in range(workers)]
    out: list[Path] = []
    for i in range(1000 * count):
        path = logs / f"bench-{i}.log"
        w = shard_of(str(path), workers)
        if room[w]:
            room[w] -= 1
            out.append(path)
            if len(out) == count:
                return out
    raise BenchError(f"could not name {count} files for {workers} workers")


def merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """``src`` merged into ``dst`` (mappings member by member, anything else replaced)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v
    return dst


Log = Callable[[str], None]


class Bench:
    def __init__(self, opts: BenchOptions, console: Console | None = None) -> None:
        if opts.scenario not in SCENARIOS:
            raise BenchError(f"unknown scenario {opts.scenario!r}; use {', '.join(SCENARIOS)}")
        if opts.ceiling not in ("auto", "kcat", "python", "none"):
            raise BenchError("--ceiling is auto, kcat, python or none")
        if opts.files < 1:
            raise BenchError("--files must be at least 1")
        if opts.workers is not None and not 1 <= opts.workers <= 64:
            raise BenchError("--workers must be between 1 and 64")
        if opts.source not in ("file", "http", "forward", "otlp"):
            raise BenchError("--source is file, http, forward or otlp")
        if opts.http_format not in ("ndjson", "msgpack"):
            raise BenchError("--http-format is ndjson or msgpack")
        if opts.source == "otlp":
            opts.http_format = "otlp"
        if opts.source != "file" and opts.ceiling != "none":
            opts.ceiling = "none"  # the ceiling replays the generated files; the other sources write none
        self.forward_port = free_port() if opts.source == "forward" else 0
        self.opts = opts
        #: With source otlp: the agent's OTLP endpoint (its port is chosen with the agent's config).
        self.otlp_url = ""
        self.console = console or Console(stderr=True)
        self.scenario = SCENARIOS[opts.scenario]
        self.duration = opts.duration if opts.duration is not None else self.scenario.duration
        rate = self.scenario.rate
        if opts.lines is not None:
            self.expected = opts.lines
        elif rate:
            self.expected = round(rate * self.duration)
        else:
            self.expected = round(MAX_LINES_PER_SECOND * self.duration)
        if self.expected < 1:
            raise BenchError("the run would write no line; raise --duration or --lines")
        self.rate = rate
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.run_id = f"{opts.scenario}-{stamp}-{uuid.uuid4().hex[:6]}"
        self.dir = (opts.out_dir / self.run_id).resolve()
        self.factory = LineFactory(opts.format, opts.line_bytes, opts.levels, opts.seed, opts.keys)
        #: Agent processes of the run (known once its config is written).
        self.workers = opts.workers or 1

    def log(self, text: str) -> None:
        self.console.print(f"[dim]bench:[/] {text}", highlight=False)

    # -- set-up -----------------------------------------------------------------------------------
    def _check_broker(self) -> None:
        from confluent_kafka.admin import AdminClient

        try:
            AdminClient({"bootstrap.servers": self.opts.bootstrap}).list_topics(timeout=15)
        except Exception as exc:
            raise BenchError(
                f"no Kafka broker answers at {self.opts.bootstrap} ({exc}); "
                "start one with `log-capturer kafka up` or pass --bootstrap"
            ) from None

    def _create_topics(self) -> dict[str, str]:
        prefix = f"bench-{self.run_id}"
        names = {t.name: f"{prefix}-{t.name}" for t in TOPICS}
        routed = [t for t in TOPICS if t.name not in NOT_ROUTED]
        names["ceiling"] = f"{prefix}-ceiling"
        specs = (
            *(TopicSpec(names[t.name], t.partitions, t.retention_days, t.purpose, t.compact) for t in TOPICS),
            TopicSpec(names["ceiling"], sum(t.partitions for t in routed), 1, "bench ceiling"),
        )
        if self.opts.ceiling_keyed:
            # As many partitions as one routed topic: each key goes where the agent puts it.
            names["ceiling-keyed"] = f"{prefix}-ceiling-keyed"
            specs = (
                *specs,
                TopicSpec(names["ceiling-keyed"], routed[0].partitions, 1, "bench keyed ceiling"),
            )
        create_topics(
            self.opts.bootstrap, topics=specs, topic_config={"message.timestamp.type": "LogAppendTime"}
        )
        return names

    def _agent_config(self, topics: dict[str, str]) -> dict[str, Any]:
        base = default_agent_config()
        if self.opts.format == "mixed":
            # Its stack traces, joined to their line as a Vector or Fluent Bit user would
            # configure it: one record per log line, as the bench counts them.
            base["files_config"]["multiline"] = {"preset": "java"}
        if self.opts.agent_config is not None:
            merge(base, yaml.safe_load(self.opts.agent_config.read_text()) or {})
        if self.opts.workers is not None:
            base.setdefault("app", {})["workers"] = self.opts.workers
        kafka = {
            "enabled": True,
            "brokers": self.opts.bootstrap.split(","),
            "topic": topics["logs"],
            "compression": self.opts.compression,
            "required_acks": self.opts.acks,
            # The shipped tuning's level is zstd's; another codec runs at its own default.
            "compression_level": base["sinks"]["kafka"].get("compression_level")
            if self.opts.compression == "zstd"
            else None,
            "priority_routing": {
                "enabled": True,
                "high_topic": topics["logs-high-priority"],
                "normal_topic": topics["logs-normal-priority"],
                "low_topic": topics["logs-low-priority"],
            },
            "dlq_config": {"topic": topics["logs-dlq"]},
            # Used with delivery: exactly_once (--agent-config).
            "exactly_once": {
                "positions_topic": topics["log-capturer-positions"],
                "transactional_id": f"bench-{self.run_id}",
            },
        }
        otlp_port = free_port()
        self.otlp_url = f"http://127.0.0.1:{otlp_port}/v1/logs"
        return merge(
            base,
            {
                "otlp": {"enabled": self.opts.source == "otlp", "port": otlp_port},
                "server": {"enabled": True, "host": "127.0.0.1", "port": free_port()},
                "metrics": {"enabled": True, "host": "127.0.0.1", "port": free_port()},
                "files_config": {"enabled": True, "watch_directories": [str(self.dir / "logs")]},
                "dispatcher": {"dlq_config": {"enabled": True, "directory": str(self.dir / "dlq")}},
                "positions": {"directory": str(self.dir / "positions")},
                "sinks": {"kafka": kafka},
                **(
                    {"forward": {"enabled": True, "host": "127.0.0.1", "port": self.forward_port}}
                    if self.opts.source == "forward"
                    else {}
                ),
            },
        )

    def _generate(
        self, files: list[Path], rate: float, count: int, duration: float | None, api: str = ""
    ) -> dict[str, Any]:
        summary = self.dir / "generator.json"
        if self.opts.source in ("http", "otlp"):
            url = api + "/api/v1/logs" if self.opts.source == "http" else self.otlp_url
            target = [
                "--target",
                "http",
                "--url",
                url,
                "--http-format",
                self.opts.http_format,
                "--http-batch",
                str(self.opts.http_batch),
                "--in-flight",
                str(self.opts.in_flight),
            ]
        elif self.opts.source == "forward":
            target = [
                "--target",
                "forward",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.forward_port),
                "--http-batch",
                str(self.opts.http_batch),
            ]
            if self.opts.forward_compress:
                target.append("--forward-compress")
            target += ["--forward-record", self.opts.forward_record, "--in-flight", str(self.opts.in_flight)]
        else:
            target = ["--target", "file"]
        if self.opts.source != "file" and rate == 0:
            target.append("--prepare")
        cmd = [
            sys.executable,
            "-m",
            "log_capturer",
            "generate",
            *target,
            "--no-progress",
            "--rate",
            str(rate),
            "--count",
            str(count),
            "--duration",
            str(duration or 0),
            "--line-bytes",
            str(self.opts.line_bytes),
            "--format",
            self.opts.format,
            "--levels",
            self.opts.levels,
            "--seed",
            str(self.opts.seed),
            *(["--keys", str(self.opts.keys)] if self.opts.keys is not None else []),
            "--summary",
            str(summary),
        ]
        for f in files:
            cmd += ["--output", str(f)]
        with (self.dir / "generator.log").open("ab") as logf:
            proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            raise BenchError(f"the generator failed; see {self.dir / 'generator.log'}")
        data: dict[str, Any] = orjson.loads(summary.read_bytes())
        return data

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        opts = self.opts
        self._check_broker()
        self.dir.mkdir(parents=True)
        (self.dir / "logs").mkdir()
        topics = self._create_topics()
        cfg = self._agent_config(topics)
        cfg_path = self.dir / "agent.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        from log_capturer.config import ConfigError, load_config

        try:
            agent_cfg = load_config(cfg_path)
        except ConfigError as exc:
            raise BenchError(f"the agent config for the bench is invalid:\n{exc}") from None
        self.workers = agent_cfg.app.workers
        files = bench_files(self.dir / "logs", opts.files, self.workers) if opts.source == "file" else []
        for f in files:
            f.touch()
        run = _RunFacts(
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            load_before=load_average(),
            topics=topics,
            cfg_path=cfg_path,
            agent_log=self.dir / "agent.log",
        )
        live = self.rate > 0 or opts.source != "file"
        self.log(f"run {self.run_id}: {self.expected:,} lines -> {self.dir}")
        if not live:
            self.log(f"writing {self.expected:,} lines in advance")
            run.generator = self._generate(files, 0, self.expected, None)
        routed = [topics[t.name] for t in TOPICS if t.name not in NOT_ROUTED]
        run.t0 = time.time()
        busy0, total0 = machine_busy()
        with run.agent_log.open("ab") as logf:
            agent = subprocess.Popen(
                [sys.executable, "-m", "log_capturer", "run", "--config", str(cfg_path), "--no-status"],
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=self._agent_env(),
            )
        api = f"http://127.0.0.1:{cfg['server']['port']}"
        metrics_url = f"http://127.0.0.1:{cfg['metrics']['port']}{cfg['metrics'].get('path', '/metrics')}"
        sampler: Sampler | None = None
        profiler: Profiler | None = None
        stop_reading = threading.Event()
        reader: threading.Thread | None = None
        try:
            self._wait_agent(agent, api, run.agent_log)
            run.agent_started = time.time()
            sampler = Sampler(
                agent.pid,
                api + "/stats",
                run.t0,
                agent_cfg.sinks.kafka.queue_size,
                opts.sample_interval,
                opts.watch_pids,
            )
            sampler.start()
            if opts.profile:
                try:
                    profiler = Profiler(
                        agent.pid, self.dir / "profile.folded", subprocesses=agent_cfg.app.workers > 1
                    )
                except RuntimeError as exc:
                    run.profile_error = str(exc)
            collector = Collector(
                opts.bootstrap,
                [*routed, topics["logs-dlq"]],
                self.expected,
                run.t0,
                self.factory,
                self._topic_of_level(topics),
                topics["logs-dlq"],
                read_committed=agent_cfg.sinks.kafka.delivery == "exactly_once",
            )
            if live:
                reader = threading.Thread(target=collector.run, args=(stop_reading,), daemon=True)
                # A prepared run (a network source at rate 0) reads the topics once the client is
                # done, so that the reading takes no CPU from the agent during the run; the lines/s
                # are measured by the broker's append times either way.
                prepared = opts.source != "file" and not self.rate
                if not prepared:
                    reader.start()
                self.log(f"generating {self.rate:,.0f} lines/s for {self.duration:g}s")
                run.generator = self._generate(
                    files, self.rate, self.expected, self.duration if self.rate else None, api
                )
                if prepared:
                    reader.start()
                self._wait_done(lambda: collector.unique, agent, "lines consumed")
            else:
                self._wait_done(lambda: self._high_total(collector, routed), agent, "records in Kafka")
            run.done_at = time.time()
            run.rss_peak = tree_rss_mib(agent.pid, peak=True)
            run.cpu_total = tree_cpu_seconds(agent.pid)
            run.thread_cpu = tree_thread_cpu(agent.pid)
            run.stats, run.metrics = self._final_stats(api, metrics_url)
            if profiler is not None:
                run.profile_error = profiler.stop()
                profiler = None
            sampler.stop()
            run.samples = sampler.samples
            busy1, total1 = machine_busy()
            run.machine_cpu = (busy1 - busy0) / max(total1 - total0, 1e-9)
            run.exit_code = self._stop_agent(agent)
            stop_reading.set()
            if reader is not None:
                reader.join(30)
            self.log("reading the topics" + ("" if live else f" ({self.expected:,} records)"))
            if not collector.drain(600):
                self.log("[yellow]could not read every partition to its end within 600 s[/]")
        finally:
            stop_reading.set()
            if profiler is not None:
                profiler.stop()
            if sampler is not None:
                sampler.stop()
            if agent.poll() is None:
                agent.kill()
                agent.wait(10)
        run.load_after = load_average()
        if opts.ceiling != "none":
            self.log(f"ceiling: {opts.ceiling} on the same file(s)")
            from log_capturer.sinks.kafka.client import producer_config

            run.ceiling = run_ceiling(
                opts.ceiling,
                opts.bootstrap,
                topics["ceiling"],
                files,
                self.expected,
                producer_config(agent_cfg.sinks.kafka),
            )
            if opts.ceiling_keyed:
                run.ceiling_keyed = self._keyed_ceiling(topics["ceiling-keyed"], files, agent_cfg)
        run.cleanup = self._clean_up(collector, run)
        try:
            result = self._result(collector, run)
        finally:
            collector.close()
        return result

    def _agent_env(self) -> dict[str, str] | None:
        """The agent's environment: with ``agent_src``, its tree first on PYTHONPATH."""
        if self.opts.agent_src is None:
            return None
        env = dict(os.environ)
        src = str(self.opts.agent_src.resolve())
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def _keyed_ceiling(self, topic: str, files: list[Path], agent_cfg: Config) -> CeilingResult:
        """kcat with the agent's keys (ceiling.run_keyed_ceiling) on a keyed copy of the files."""
        from log_capturer.sinks.kafka.client import producer_config

        kafka = agent_cfg.sinks.kafka
        part = kafka.partitioning
        pattern = key_pattern(self.opts.format, part.key_field) if part.enabled else None
        if pattern is None:
            why = (
                "the agent partitions by no key"
                if not part.enabled
                else f"{self.opts.format} lines carry no key"
            )
            return CeilingResult("kcat -K", "", topic, self.expected, 0, 0.0, None, None, error=why)
        keyed = self.dir / "logs" / "keyed-copy.txt"
        self.log(f"keyed ceiling: kcat -K with each line's {part.key_field}")
        try:
            keyed_copy(files, keyed, pattern)
            return run_keyed_ceiling(self.opts.bootstrap, topic, keyed, self.expected, producer_config(kafka))
        finally:
            keyed.unlink(missing_ok=True)

    def _clean_up(self, c: Collector, run: _RunFacts) -> dict[str, Any]:
        """Delete the run's log files and topics, unless --keep or the run went wrong (they are
        then what one looks at)."""
        why = ""
        if self.opts.keep:
            why = "--keep"
        elif c.lost or c.duplicated or c.misrouted or run.exit_code != 0:
            why = "the run lost, duplicated or misrouted lines, or the agent failed"
        if why:
            return {"deleted": False, "why_kept": why}
        freed = 0
        for f in sorted((self.dir / "logs").iterdir()):
            if f.is_file():
                freed += f.stat().st_size
                f.unlink()
        names = list(run.topics.values())
        failed = delete_topics(self.opts.bootstrap, names)
        for name, reason in failed.items():
            self.log(f"[yellow]could not delete topic {name}: {reason}[/]")
        deleted = len(names) - len(failed)
        self.log(f"deleted the generated files ({freed / 2**20:,.0f} MiB) and {deleted} topics")
        return {"deleted": True, "file_bytes": freed, "topics": deleted, "topic_errors": failed}

    def _topic_of_level(self, topics: dict[str, str]) -> dict[str, str]:
        high = topics["logs-high-priority"]
        normal = topics["logs-normal-priority"]
        low = topics["logs-low-priority"]
        return {
            "trace": low,
            "debug": low,
            "info": normal,
            "warn": normal,
            "error": high,
            "fatal": high,
            "critical": high,
            "none": topics["logs"],
        }

    def _wait_agent(self, agent: subprocess.Popen[bytes], api: str, log_path: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if agent.poll() is not None:
                raise BenchError(
                    f"the agent exited at start-up (code {agent.returncode}):\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            try:
                get_json(api + "/stats", 1)
                return
            except (OSError, ValueError):
                time.sleep(0.2)
        raise BenchError(f"the agent's API did not answer within 60 s; see {log_path}")

    @staticmethod
    def _high_total(collector: Collector, topics: list[str]) -> int:
        return sum(h for (t, _), h in collector.high_watermarks().items() if t in topics)

    def _wait_done(self, progress: Callable[[], int], agent: subprocess.Popen[bytes], what: str) -> None:
        """Until ``progress()`` reaches the expected count, or stops growing for stall_timeout."""
        last, last_change = -1, time.monotonic()
        next_note = time.monotonic() + 10
        while True:
            n = progress()
            now = time.monotonic()
            if n >= self.expected:
                return
            if agent.poll() is not None:
                raise BenchError(
                    f"the agent exited (code {agent.returncode}) with {n:,} of "
                    f"{self.expected:,} {what}; see {self.dir / 'agent.log'}"
                )
            if n != last:
                last, last_change = n, now
            elif now - last_change > self.opts.stall_timeout:
                self.log(
                    f"[yellow]no progress for {self.opts.stall_timeout:g}s at {n:,} of "
                    f"{self.expected:,} {what}; stopping[/]"
                )
                return
            if now >= next_note:
                next_note = now + 10
                self.log(f"{n:,} of {self.expected:,} {what}")
            time.sleep(0.1 if n else 0.25)

    def _final_stats(self, api: str, metrics_url: str) -> tuple[dict[str, Any], dict[str, float]]:
        from prometheus_client.parser import text_string_to_metric_families

        try:
            stats: dict[str, Any] = get_json(api + "/stats", 5)
        except (OSError, ValueError):
            stats = {}
        sums: dict[str, float] = {}
        try:
            for fam in text_string_to_metric_families(get_text(metrics_url)):
                for s in fam.samples:
                    if s.name in ("errors_total", "kafka_producer_errors_total", "kafka_dlq_messages_total"):
                        sums[s.name] = sums.get(s.name, 0.0) + s.value
        except (OSError, ValueError):
            pass
        return stats, sums

    def _stop_agent(self, agent: subprocess.Popen[bytes]) -> int:
        agent.send_signal(signal.SIGTERM)
        try:
            return agent.wait(120)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(10)
            return -9

    def _profile_summary(self, error: str) -> dict[str, Any]:
        folded = self.dir / "profile.folded"
        if error or not folded.exists():
            return {"error": error or "no profile written"}
        text = summarize(folded)
        (self.dir / "profile-summary.txt").write_text(text)
        return {"folded": str(folded), "summary_file": str(self.dir / "profile-summary.txt"), "summary": text}

    # -- results ----------------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        opts = self.opts
        return {
            "scenario": opts.scenario,
            "source": opts.source,
            "http_format": opts.http_format if opts.source in ("http", "otlp") else None,
            "http_batch": opts.http_batch if opts.source in ("http", "forward", "otlp") else None,
            "forward_compress": opts.forward_compress if opts.source == "forward" else None,
            "forward_record": opts.forward_record if opts.source == "forward" else None,
            "in_flight": opts.in_flight if opts.source in ("http", "forward", "otlp") else None,
            "prepared": opts.source in ("http", "forward", "otlp") and not self.rate,
            "rate": self.rate,
            "duration": self.duration,
            "lines": self.expected,
            "acks": opts.acks,
            "compression": opts.compression,
            "line_bytes": opts.line_bytes,
            "format": opts.format,
            "levels": opts.levels,
            "seed": opts.seed,
            "keys": opts.keys,
            "files": opts.files,
            "workers": self.workers,
            "bootstrap": opts.bootstrap,
            "ceiling": opts.ceiling,
            "ceiling_keyed": opts.ceiling_keyed,
            "agent_config": str(opts.agent_config) if opts.agent_config else None,
            "agent_src": str(opts.agent_src) if opts.agent_src else None,
            "agent_git": _git_describe(opts.agent_src) if opts.agent_src else None,
        }

    def _result(self, c: Collector, run: _RunFacts) -> dict[str, Any]:
        span = None
        if c.first_append_ms is not None and c.last_append_ms is not None:
            span = (c.last_append_ms - c.first_append_ms) / 1000.0
        throughput = c.unique / span if span else None
        disp = [s.dispatcher_utilization for s in run.samples if s.dispatcher_utilization is not None]
        prod = [s.producer_utilization for s in run.samples if s.producer_utilization is not None]
        sinks = run.stats.get("sinks", {})
        sink_stats: dict[str, Any] = next(iter(sinks.values()), {}) if isinstance(sinks, dict) else {}
        errors = {
            "errors_total": int(run.metrics.get("errors_total", 0)),
            "kafka_producer_errors_total": int(run.metrics.get("kafka_producer_errors_total", 0)),
            "dlq": int(run.metrics.get("kafka_dlq_messages_total", 0)),
            "retried": int(sink_stats.get("retried", 0)),
            "agent_log_errors": _count_log_errors(run.agent_log),
            "consumer_errors": c.consumer_errors,
            "foreign_records": c.foreign,
        }
        failures = errors["kafka_producer_errors_total"] + errors["dlq"] + c.lost
        cpu = run.cpu_total
        res: dict[str, Any] = {
            "lines_expected": self.expected,
            "records": c.records,
            "unique": c.unique,
            "lost": c.lost,
            "duplicated": c.duplicated,
            "misrouted": c.misrouted,
            "missing_ranges": c.missing_ranges() if c.lost else [],
            "by_topic": dict(c.by_topic),
            "throughput": None if throughput is None else round(throughput, 1),
            "append_span_seconds": span,
            "wall_seconds": round(run.done_at - run.agent_started, 3),
            "latency_ms": {
                "consume": report.percentiles(c.lat_consume_ms if self.rate else []),
                "append": report.percentiles(c.lat_append_ms),
            },
            "non_append_timestamps": c.non_append_timestamps,
            "queue_peak": {
                "dispatcher": max(disp) if disp else None,
                "producer": max(prod) if prod else None,
            },
            "rss_peak_mib": None if run.rss_peak is None else round(run.rss_peak, 1),
            # With workers, rss_peak_mib sums each process's own peak (an upper bound); this is the
            # highest total the sampler saw (every sample_interval).
            "rss_sampled_peak_mib": round(max((s.rss_mib or 0.0 for s in run.samples), default=0.0), 1),
            # The same for PSS: pages the processes share (their libraries) counted once.
            "pss_sampled_peak_mib": round(max((s.pss_mib or 0.0 for s in run.samples), default=0.0), 1),
            "agent_cpu_seconds": None if cpu is None else round(cpu, 2),
            "cpu_us_per_line": None if cpu is None or not c.unique else round(cpu / c.unique * 1e6, 3),
            # The same by thread (librdkafka's rdk:broker, dispatch, file-source, the poll
            # thread...), largest first; start-up is in the main thread's (log-capturer).
            "cpu_us_per_line_by_thread": by_thread(run.thread_cpu, c.unique),
            "machine_cpu_utilization": round(run.machine_cpu, 3),
            "errors": errors,
            "error_rate": failures / self.expected,
        }
        ceiling = run.ceiling
        ratio = None
        if ceiling is not None and ceiling.throughput and throughput:
            ratio = round(throughput / ceiling.throughput, 4)
        # MB/s of the lines shipped (their bytes in the file, newline included): the agent's and
        # the ceiling's over the same file, so their ratio is the lines' ratio.
        info = run.generator.get("target_info") or {}
        line_size = info["bytes"] / self.expected if info.get("bytes") and self.expected else None
        res["bytes_per_line"] = None if line_size is None else round(line_size, 1)
        res["mb_per_s"] = (
            None if line_size is None or not throughput else round(throughput * line_size / 1e6, 2)
        )
        result: dict[str, Any] = {
            "schema": 1,
            "run_id": self.run_id,
            "started_at": run.started_at,
            "machine": machine_info(),
            "load": {"before": run.load_before, "after": run.load_after},
            "options": self._options(),
            "agent": {
                "config": str(run.cfg_path),
                "log": str(run.agent_log),
                "exit_code": run.exit_code,
                "git": _git_describe(self.opts.agent_src),
            },
            "generator": run.generator,
            "topics": run.topics,
            "results": res,
            "ceiling": ceiling.as_dict() if ceiling is not None else None,
            "ceiling_mb_per_s": None
            if ceiling is None or not ceiling.throughput or line_size is None
            else round(ceiling.throughput * line_size / 1e6, 2),
            "ratio_to_ceiling": ratio,
            "cleanup": run.cleanup,
        }
        keyed = run.ceiling_keyed
        if keyed is not None:
            result["ceiling_keyed"] = keyed.as_dict()
            result["ratio_to_keyed_ceiling"] = (
                round(throughput / keyed.throughput, 4) if keyed.throughput and throughput else None
            )
        result["targets"] = report.verdict_dicts(report.verdicts(result))
        if self.opts.profile:
            result["profile"] = self._profile_summary(run.profile_error)
        series = _series(c, run.samples, live=bool(self.rate))
        result["timeseries"] = {k: v for k, v in series.items() if k != "latency_kind"}
        json_path = self.opts.json_out or self.dir / "result.json"
        chart_path = self.opts.chart_out or json_path.with_suffix(".png")
        result["files"] = {"json": str(json_path), "chart": str(chart_path), "dir": str(self.dir)}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        report.write_chart(result, series, chart_path)
        json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        return result


@dataclass
class _RunFacts:
    """What one run observed, gathered as it goes."""

    started_at: str
    load_before: list[float]
    topics: dict[str, str]
    cfg_path: Path
    agent_log: Path
    t0: float = 0.0
    agent_started: float = 0.0
    done_at: float = 0.0
    generator: dict[str, Any] = field(default_factory=dict)
    rss_peak: float | None = None
    cpu_total: float | None = None
    #: CPU seconds of the agent's threads by name (system.tree_thread_cpu), read with cpu_total.
    thread_cpu: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    samples: list[Any] = field(default_factory=list)
    machine_cpu: float = 0.0
    load_after: list[float] = field(default_factory=list)
    ceiling: CeilingResult | None = None
    ceiling_keyed: CeilingResult | None = None
    profile_error: str = ""
    cleanup: dict[str, Any] = field(default_factory=dict)


def _series(c: Collector, samples: list[Any], live: bool) -> dict[str, Any]:
    """Per-second throughput (by append time) and latency (by emit time), and the samples."""
    import numpy as np

    out: dict[str, Any] = {}
    append = np.frombuffer(c.append_rel, dtype=np.float32)
    if append.size:
        secs = np.floor(append).astype(np.int64)
        lo = int(secs.min())
        counts = np.bincount(secs - lo)
        out["throughput_t"] = [float(lo + i) for i in range(len(counts))]
        out["throughput"] = [int(x) for x in counts]
    else:
        out["throughput_t"], out["throughput"] = [], []
    lat = np.frombuffer(c.lat_consume_ms if live else c.lat_append_ms, dtype=np.float32)
    emit = np.frombuffer(c.emit_rel, dtype=np.float32)
    out["latency_kind"] = "emit -> consumed" if live else "emit -> broker append"
    ts: list[float] = []
    p50: list[float] = []
    p99: list[float] = []
    if lat.size:
        secs = np.floor(emit).astype(np.int64)
        order = np.argsort(secs, kind="stable")
        secs, lat = secs[order], lat[order]
        bounds = np.flatnonzero(np.diff(secs)) + 1
        for chunk_secs, chunk in zip(np.split(secs, bounds), np.split(lat, bounds), strict=True):
            ts.append(float(chunk_secs[0]))
            a, b = np.percentile(chunk, [50, 99])
            p50.append(round(float(a), 2))
            p99.append(round(float(b), 2))
    out["latency_t"], out["latency_p50"], out["latency_p99"] = ts, p50, p99
    out["sample_t"] = [s.t for s in samples]
    out["rss_mib"] = [s.rss_mib or 0.0 for s in samples]
    out["dispatcher_util"] = [s.dispatcher_utilization or 0.0 for s in samples]
    out["producer_util"] = [s.producer_utilization or 0.0 for s in samples]
    out["samples"] = [asdict(s) for s in samples]
    return out


def _count_log_errors(path: Path) -> int:
    n = 0
    try:
        with path.open("rb") as f:
            for line in f:
                if b'"level":"error"' in line or b'"level": "error"' in line or b"Traceback" in line:
                    n += 1
    except OSError:
        return 0
    return n


def _git_describe(where: Path | None = None) -> str | None:
    here = where.resolve() if where is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_bench(opts: BenchOptions, console: Console | None = None) -> dict[str, Any]:
    """Run one benchmark; return the result (also written as JSON and PNG)."""
    bench = Bench(opts, console)
    result = bench.run()
    report.print_report(result, bench.console)
    bench.log(f"result: {result['files']['json']}  chart: {result['files']['chart']}")
    return result
