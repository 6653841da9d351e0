"""The current standing of BENCHMARKS.md: one row per scenario, read from the committed JSON results.

``python -m log_capturer.devtools.bench.standing`` prints the standing table (Markdown) and, with
``--charts DIR``, draws its two charts (throughput against each scenario's raw ceiling, latency)
as PNG files. Each row names the runs of the newest series of its scenario; when a newer series
is recorded, point the row at its JSON files and run this again. Nothing here measures anything.

The JSON files come in three shapes, one per kind of bench:

- ``bench``: ``log-capturer bench`` of a file, HTTP, forward or OTLP source into Kafka
  (``results``, ``ceiling`` and ``ratio_to_ceiling``; the ceiling is kcat on the same files).
- ``client``: the Loki and Elasticsearch sinks and the Kafka source (``agent_lines_per_second``
  against ``ceiling_lines_per_second``: a bare client doing the same work against the same server).
- ``many-files``: the many-files scenario (idle CPU, start-up, latency; no ceiling).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[4]
HISTORY = "docs/benchmarks-history.md"


@dataclass(frozen=True)
class Row:
    """One scenario of the standing and the runs of its newest series."""

    scenario: str
    kind: str  # "bench", "client" or "many-files"
    runs: tuple[str, ...]  # JSON files, relative to the repository's root
    series: str  # the series' anchor in the history, or "#..." for a section of BENCHMARKS.md
    commit: str = ""  # when the JSON files do not record it
    date: str = ""  # idem
    ceiling: str = "kcat"
    command: str = ""  # how to take one run of the series (``$B``: the broker's address)

    def series_link(self, history: str = HISTORY) -> str:
        return self.series if self.series.startswith("#") else f"{history}#{self.series}"


def _bench(prefix: str, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"docs/bench/{prefix}{name}.json" for name in names)


D6 = "2026-12-06/"
D7 = "2026-12-07/"
D8 = "2026-12-08/"
#: The series of 2026-12-08 on the AMD EPYC machine (main `a5a1e9b`).
ANCHOR_S12 = (
    "issue-20s-rows-on-the-slower-machine-and-five-ideas-for-mixed-lines-that-did-not-help"
    "-2026-12-08-0139-0253-utc"
)
#: The standing, one row per scenario. Rows of the series of issue 20 still being measured (mixed
#: lines at the new target, long lines, many keys, many files again) are added here when merged.
ROWS: tuple[Row, ...] = (
    Row(
        "file -> Kafka, max, 150-byte JSON, 1 process",
        "bench",
        _bench(D8 + "s12-json-", ["1", "2", "3"]),
        ANCHOR_S12,
        command="log-capturer bench --scenario max --files 4 --workers 1 --bootstrap $B",
    ),
    Row(
        "file -> Kafka, max, 150-byte JSON, `--workers 2`",
        "bench",
        _bench(D6 + "scaling-", ["w2-1", "w2-2", "w2-3", "w2-4", "w2-5", "w2-6"]),
        "#what-more-cores-buy",
        command="log-capturer bench --scenario max --duration 10 --files 2 --workers 2 --bootstrap $B",
    ),
    Row(
        "file -> Kafka, max, mixed lines (40 % plain, 30 % logfmt, 30 % JSON, 80-300 bytes, Java traces)",
        "bench",
        _bench(D8 + "s12-mixed-", ["1", "2", "3"]),
        ANCHOR_S12,
        command="log-capturer bench --scenario max --format mixed --lines 2000000 --bootstrap $B",
    ),
    Row(
        "file -> Kafka, baseline (1,000 lines/s)",
        "bench",
        _bench("2026-12-02/adaptive-batching-", ["baseline-on", "baseline-on-2"]),
        "adaptive-batching-on-and-off",
        commit="9991dde",
        ceiling="",
        command="log-capturer bench --scenario baseline --duration 60 --ceiling none --bootstrap $B",
    ),
    Row(
        "file -> Kafka, high (10,000 lines/s)",
        "bench",
        _bench("2026-11-25/", ["high"]),
        "results",
        ceiling="",
        command="log-capturer bench --scenario high --bootstrap $B",
    ),
    Row(
        "file -> Kafka, peak (20,000 lines/s)",
        "bench",
        _bench(D8 + "s12-peak-", ["1", "2", "3"]),
        ANCHOR_S12,
        ceiling="",
        command=(
            "log-capturer bench --scenario peak --files 4 --workers 1 --duration 30 --ceiling none"
            " --bootstrap $B"
        ),
    ),
    Row(
        "file -> Kafka, max, 8 KiB JSON lines",
        "bench",
        _bench(D8 + "s12-long8k-", ["1", "2", "3"]),
        ANCHOR_S12,
        command="log-capturer bench --scenario max --line-bytes 8192 --lines 40000 --bootstrap $B",
    ),
    Row(
        "file -> Kafka, max, 64 KiB JSON lines",
        "bench",
        _bench(D8 + "s12-long64k-", ["1", "2", "3"]),
        ANCHOR_S12,
        command="log-capturer bench --scenario max --line-bytes 65536 --lines 6000 --bootstrap $B",
    ),
    Row(
        "file -> Kafka, max, 64 KiB lines cut at `max_line_bytes: 8192`",
        "bench",
        _bench(D8 + "s12-trunc-", ["1", "3", "4"]),
        ANCHOR_S12,
        ceiling="",
        command=(
            "log-capturer bench --scenario max --line-bytes 65536 --lines 15000 --ceiling none"
            " --agent-config max8k.yaml --bootstrap $B"
        ),
    ),
    Row(
        "file -> Kafka, max, 8 KiB lines with `max_line_bytes: 8192` (not cut)",
        "bench",
        _bench(D8 + "s12-plain8k-", ["1", "3", "4"]),
        ANCHOR_S12,
        ceiling="",
        command=(
            "log-capturer bench --scenario max --line-bytes 8192 --lines 15000 --ceiling none"
            " --agent-config max8k.yaml --bootstrap $B"
        ),
    ),
    Row(
        "file -> Kafka, max, 16 distinct keys",
        "bench",
        _bench(D8 + "s12-keys16-", ["1", "3", "4"]),
        ANCHOR_S12,
        ceiling="",
        command="log-capturer bench --scenario max --lines 600000 --keys 16 --ceiling none --bootstrap $B",
    ),
    Row(
        "file -> Kafka, max, 10,000 distinct keys",
        "bench",
        _bench(D8 + "s12-keys10000-", ["1", "3", "4"]),
        ANCHOR_S12,
        ceiling="",
        command="log-capturer bench --scenario max --lines 600000 --keys 10000 --ceiling none --bootstrap $B",
    ),
    Row(
        "file -> Kafka, max, `encoding.codec: raw`",
        "bench",
        _bench(D7 + "raw-quiet-raw-", ["1", "2", "3", "4", "5", "6"]),
        "codec-raw-against-kcat-on-a-quiet-host-2026-12-07-0219-0238-utc",
        command=(
            "log-capturer bench --scenario max --files 4 --workers 1"
            " --agent-config docs/bench/2026-12-06/encodings-raw.yaml --bootstrap $B"
        ),
    ),
    Row(
        "file -> Kafka, max, exactly-once",
        "bench",
        _bench(D6 + "exactly-once-", ["eos-max-6", "eos-max-7", "eos-max-8", "eos-max-9"]),
        "exactly-once-vs-at-least-once-alternated-2026-12-06",
        command="log-capturer bench --scenario max --duration 3 --agent-config eos.yaml --bootstrap $B",
    ),
    Row(
        "file -> Kafka, peak, exactly-once",
        "bench",
        _bench(D6 + "exactly-once-", ["peak-eos1", "peak-eos3"]),
        "exactly-once-vs-at-least-once-alternated-2026-12-06",
        ceiling="",
        command=(
            "log-capturer bench --scenario peak --duration 30 --ceiling none --agent-config eos.yaml"
            " --bootstrap $B"
        ),
    ),
    Row(
        "many files: 10,000 followed, 100 written at 100 lines/s",
        "many-files",
        _bench(D8 + "s12-manyfiles-", ["1", "2", "3"]),
        ANCHOR_S12,
        ceiling="",
        command=(
            "log-capturer bench --scenario many-files --files 10000 --active 100 --rate 100"
            " --duration 20 --watcher auto --bootstrap $B"
        ),
    ),
    Row(
        "HTTP ingest -> Kafka, NDJSON",
        "bench",
        _bench(D6 + "inputs-", ["http-ndjson-A1", "http-ndjson-A2", "http-ndjson-A3"]),
        "forward-otlp-and-http-ingest-the-rest-of-the-per-record-python-in-c-2026-12-06-afternoon",
        ceiling="",
        command=(
            "log-capturer bench --scenario max --duration 2 --source http --http-batch 2000 --bootstrap $B"
        ),
    ),
    Row(
        "HTTP ingest -> Kafka, Fluent Bit msgpack",
        "bench",
        _bench(D7 + "s3-final-msgpack-", ["1", "2", "3"]),
        "the-inputs-with-the-sessions-final-code-on-a-quiet-host-2026-12-07-0710-0716-utc",
        ceiling="",
        command=(
            "log-capturer bench --scenario max --duration 3 --source http --http-batch 2000"
            " --http-format msgpack --bootstrap $B"
        ),
    ),
    Row(
        "forward -> Kafka, `{log}` as Fluent Bit sends a file",
        "bench",
        _bench(D7 + "s4-fwd-fwdlog-", ["1", "2", "3"]),
        "forward-messages-read-in-one-pass-from-their-bytes-2026-12-07-0819-0834-utc",
        ceiling="",
        command=(
            "log-capturer bench --scenario max --duration 3 --source forward --http-batch 2000"
            " --forward-record log --bootstrap $B"
        ),
    ),
    Row(
        "forward -> Kafka, `{log, level, labels}`",
        "bench",
        _bench(D7 + "s4-fwd-fwdfields-", ["1", "2", "3"]),
        "forward-messages-read-in-one-pass-from-their-bytes-2026-12-07-0819-0834-utc",
        ceiling="",
        command=(
            "log-capturer bench --scenario max --duration 3 --source forward --http-batch 2000 --bootstrap $B"
        ),
    ),
    Row(
        "OTLP/HTTP -> Kafka, 1,000 records a request",
        "bench",
        _bench(D7 + "s3-final-otlp-", ["1", "2", "3"]),
        "the-inputs-with-the-sessions-final-code-on-a-quiet-host-2026-12-07-0710-0716-utc",
        ceiling="",
        command="log-capturer bench --scenario max --duration 3 --source otlp --bootstrap $B",
    ),
    Row(
        "file -> Loki sink -> VictoriaLogs",
        "client",
        _bench(D6 + "quiet-", ["loki1", "loki2", "loki3"]),
        "the-loki-and-elasticsearch-sinks-into-victorialogs-on-a-quieter-machine-2026-12-06",
        commit="b0fcb5b",
        date="2026-12-06",
        ceiling="bare client",
        command="log-capturer bench --sink loki --lines 1000000",
    ),
    Row(
        "file -> Elasticsearch sink -> VictoriaLogs `_bulk`",
        "client",
        _bench(D6 + "quiet-", ["es1", "es2", "es3", "es4", "es5", "es6"]),
        "the-loki-and-elasticsearch-sinks-into-victorialogs-on-a-quieter-machine-2026-12-06",
        commit="b0fcb5b",
        date="2026-12-06",
        ceiling="bare client",
        command="log-capturer bench --sink elasticsearch --es-url victorialogs --lines 500000",
    ),
    Row(
        "Kafka source -> VictoriaLogs Loki API",
        "client",
        _bench(D7 + "s11-final-ksrc-loki-", ["1", "2", "3"]),
        "librdkafkas-prefetch-bounded-2026-12-07-2245-2354-utc",
        commit="726e2ec",
        date="2026-12-07",
        ceiling="bare client",
        command="log-capturer bench --source kafka --sink loki --lines 500000",
    ),
    Row(
        "Kafka source -> VictoriaLogs `_bulk`",
        "client",
        _bench(D7 + "s11-final-ksrc-elasticsearch-", ["1", "2", "3"]),
        "librdkafkas-prefetch-bounded-2026-12-07-2245-2354-utc",
        commit="726e2ec",
        date="2026-12-07",
        ceiling="bare client",
        command="log-capturer bench --source kafka --sink elasticsearch --lines 500000",
    ),
)


@dataclass(frozen=True)
class Run:
    """What the standing uses of one run, whatever the shape of its JSON."""

    throughput: float | None  # lines/s
    ceiling: float | None  # the raw ceiling's lines/s in the same run
    cpu_us_per_line: float | None
    p50_ms: float | None
    p99_ms: float | None
    rss_mib: float | None
    lost: int
    duplicated: int
    load: float | None  # 1-minute load average before the run
    commit: str
    date: str
    idle_cpu_pct: float | None = None


def read_run(path: Path, kind: str) -> Run:
    """One run's numbers from its JSON file."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if kind == "bench":
        results = data["results"]
        ceiling = data.get("ceiling") or {}
        latency = results["latency_ms"]["consume"]
        rated = data["options"].get("rate", 0) > 0
        return Run(
            throughput=results["throughput"],
            ceiling=ceiling.get("throughput"),
            cpu_us_per_line=results["cpu_us_per_line"],
            p50_ms=latency["p50"] if rated else None,
            p99_ms=latency["p99"] if rated else None,
            rss_mib=results["rss_peak_mib"],
            lost=results["lost"],
            duplicated=results["duplicated"],
            load=data["load"]["before"][0],
            commit=(data.get("agent", {}).get("git") or "").removesuffix("-dirty"),
            date=data["started_at"][:10],
        )
    if kind == "client":
        return Run(
            throughput=data["agent_lines_per_second"],
            ceiling=data["ceiling_lines_per_second"],
            cpu_us_per_line=data["agent_cpu_us_per_line"],
            p50_ms=None,
            p99_ms=None,
            rss_mib=data.get("agent_rss_mb"),
            lost=data["lost"],
            duplicated=data["duplicated"],
            load=data["load_average"][0],
            commit="",
            date="",
        )
    if kind == "many-files":
        return Run(
            throughput=None,
            ceiling=None,
            cpu_us_per_line=None,
            p50_ms=data["latency_ms"]["p50"],
            p99_ms=data["latency_ms"]["p99"],
            rss_mib=data["active_rss_mib"],
            lost=data["lost"],
            duplicated=data["duplicated"],
            load=data["load_average_before"][0],
            commit=data["agent_commit"],
            date=data["date"][:10],
            idle_cpu_pct=data["idle_cpu_pct"],
        )
    raise ValueError(f"unknown kind of bench result: {kind!r}")


@dataclass(frozen=True)
class Standing:
    """One row's runs, summarised: medians, with the range where it matters."""

    row: Row
    runs: tuple[Run, ...]

    def values(self, field: str) -> list[float]:
        return [v for run in self.runs if (v := getattr(run, field)) is not None]

    def median(self, field: str) -> float | None:
        values = self.values(field)
        return statistics.median(values) if values else None

    def ratios(self) -> list[float]:
        return [r.throughput / r.ceiling for r in self.runs if r.throughput and r.ceiling]

    @property
    def commits(self) -> str:
        found = sorted({run.commit for run in self.runs if run.commit}) or [self.row.commit]
        return ", ".join(found)

    @property
    def date(self) -> str:
        found = sorted({run.date for run in self.runs if run.date}) or [self.row.date]
        return ", ".join(found)


def load(row: Row, root: Path = ROOT) -> Standing:
    return Standing(row, tuple(read_run(root / run, row.kind) for run in row.runs))


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _range(values: Sequence[float], digits: int = 0) -> str:
    if not values:
        return "-"
    median = _num(statistics.median(values), digits)
    if len(values) == 1 or max(values) - min(values) < 0.005 * max(values):
        return median
    return f"{median} ({_num(min(values), digits)}-{_num(max(values), digits)})"


def table(standings: Sequence[Standing], history: str = HISTORY) -> str:
    """The standing as a Markdown table (links relative to the repository's root)."""
    lines = [
        "| scenario | lines/s | agent CPU per line | x ceiling | p50 / p99 latency | RSS peak "
        "| lost / dup | load | date, commit | runs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in standings:
        row = s.row
        if row.kind == "many-files":
            lines_s = f"idle: {_range(s.values('idle_cpu_pct'), 1)} % of a core"
            cpu = "-"
        else:
            lines_s = _range(s.values("throughput"))
            cpu = f"{_num(s.median('cpu_us_per_line'), 2)} us"
        ratios = s.ratios() if row.ceiling else []  # a rated run's kcat says nothing of the agent
        ratio = f"{_range(ratios, 2)} {row.ceiling}" if ratios else "-"
        p50, p99 = s.values("p50_ms"), s.values("p99_ms")
        latency = f"{_num(statistics.median(p50), 0)} / {_range(p99)} ms" if p99 else "-"
        rss_values = s.values("rss_mib")
        rss = f"{_num(max(rss_values), 0)} MiB" if rss_values else "-"
        lost = sum(run.lost for run in s.runs)
        dup = sum(run.duplicated for run in s.runs)
        loads = s.values("load")
        load_text = f"{min(loads):.1f}-{max(loads):.1f}" if len(loads) > 1 else _num(loads[0], 1)
        series = f"[{s.date}]({row.series_link(history)})" if row.series else s.date
        files = ", ".join(f"[{i}]({run})" for i, run in enumerate(row.runs, start=1))
        lines.append(
            f"| {row.scenario} | {lines_s} | {cpu} | {ratio} | {latency} | {rss} | {lost} / {dup} "
            f"| {load_text} | {series}, {s.commits} | {files} |"
        )
    return "\n".join(lines) + "\n"


def commands(rows: Sequence[Row]) -> str:
    """The command of every row, as a shell block for BENCHMARKS.md."""
    lines = ["```bash"]
    for row in rows:
        lines += [f"# {row.scenario}", row.command]
    return "\n".join([*lines, "```"]) + "\n"


def throughput_chart(standings: Sequence[Standing], path: Path) -> None:
    """Horizontal bars: each unrated scenario's median lines/s, its range, and its ceiling's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in standings if s.values("throughput") and s.values("p99_ms") == []]
    shown = [s for s in shown if s.row.kind != "many-files"]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(shown) + 1.5))
    ceiling_labelled = False
    for i, s in enumerate(reversed(shown)):
        values = s.values("throughput")
        median = statistics.median(values)
        ax.barh(i + 0.2, median, height=0.4, color="tab:blue", label="agent" if i == 0 else None)
        ax.plot([min(values), max(values)], [i + 0.2, i + 0.2], color="black", linewidth=1)
        ceilings = s.values("ceiling")
        if ceilings:
            ax.barh(
                i - 0.2,
                statistics.median(ceilings),
                height=0.4,
                color="tab:gray",
                label=None if ceiling_labelled else "raw ceiling (kcat / bare client), same run",
            )
            ceiling_labelled = True
            ratio = statistics.median(s.ratios())
            ax.text(max(values), i + 0.2, f"  {ratio:.2f}x", va="center", fontsize=8)
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([s.row.scenario.replace("`", "") for s in reversed(shown)], fontsize=8)
    ax.set_xlabel("lines/s (median of the series; the line: its range)")
    ax.set_title("Throughput of each scenario against its raw ceiling, 2-vCPU VM")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def latency_chart(standings: Sequence[Standing], path: Path) -> None:
    """Bars of p50 and p99 (write -> record read back) for the scenarios that measure latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in standings if s.values("p99_ms")]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(shown) + 1.5))
    for i, s in enumerate(reversed(shown)):
        p99 = s.values("p99_ms")
        ax.barh(i + 0.2, statistics.median(p99), height=0.4, color="tab:red", label="p99" if i == 0 else None)
        ax.plot([min(p99), max(p99)], [i + 0.2, i + 0.2], color="black", linewidth=1)
        p50 = statistics.median(s.values("p50_ms"))
        ax.barh(i - 0.2, p50, height=0.4, color="tab:green", label="p50" if i == 0 else None)
    ax.axvline(25, color="tab:orange", linestyle="--", linewidth=1, label="25 ms (p99 target at 20,000/s)")
    ax.axvline(50, color="tab:purple", linestyle=":", linewidth=1, label="50 ms (many-files p99 target)")
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([s.row.scenario.replace("`", "") for s in reversed(shown)], fontsize=8)
    ax.set_xlabel(
        "ms from the line's write to its record read from Kafka (median of the series; the line: range)"
    )
    ax.set_title("Latency, 2-vCPU VM")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--charts", type=Path, help="Directory to write standing-throughput.png and standing-latency.png to."
    )
    parser.add_argument(
        "--commands", action="store_true", help="Print each row's command instead of the table."
    )
    args = parser.parse_args(argv)
    if args.commands:
        print(commands(ROWS), end="")
        return 0
    standings = [load(row) for row in ROWS]
    print(table(standings), end="")
    if args.charts:
        args.charts.mkdir(parents=True, exist_ok=True)
        throughput_chart(standings, args.charts / "standing-throughput.png")
        latency_chart(standings, args.charts / "standing-latency.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
