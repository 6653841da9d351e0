"""Turning a run into numbers, target verdicts, a JSON result, a PNG chart and a table."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

#: Issue 7's targets hold for this set-up only; other runs report them as "n/a".
TARGET_CONDITIONS = {"acks": -1, "compression": "zstd", "line_bytes": 150}
TARGET_RATE = 300_000
TARGET_CEILING_RATIO = 0.5
TARGET_P99_MS = 50.0
TARGET_P99_RATE = 20_000
TARGET_RSS_MIB = 200.0


@dataclass
class Verdict:
    target: str
    requirement: str
    measured: str
    status: str  # "met", "not met" or "n/a"
    note: str = ""


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    import numpy as np

    if len(values) == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    arr = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "p50": round(float(p50), 2),
        "p95": round(float(p95), 2),
        "p99": round(float(p99), 2),
        "max": round(float(arr.max()), 2),
        "mean": round(float(arr.mean()), 2),
    }


def conditions_differ(options: dict[str, Any]) -> list[str]:
    return [f"{k}={options.get(k)}" for k, want in TARGET_CONDITIONS.items() if options.get(k) != want]


def _fmt(v: float | None, unit: str = "", digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}{unit}"


def verdicts(result: dict[str, Any]) -> list[Verdict]:
    """Issue 7's targets and the design document's expectations for this scenario."""
    opts = result["options"]
    res = result["results"]
    scenario = opts["scenario"]
    differ = conditions_differ(opts)
    full_speed = scenario == "max"
    out: list[Verdict] = []

    def judge(
        target: str,
        requirement: str,
        measured: float | None,
        ok: bool | None,
        applies: bool,
        text: str,
        why_na: str,
    ) -> None:
        if not applies:
            out.append(Verdict(target, requirement, text, "n/a", why_na))
        elif differ:
            out.append(Verdict(target, requirement, text, "n/a", "conditions differ: " + ", ".join(differ)))
        elif measured is None or ok is None:
            out.append(Verdict(target, requirement, text, "not met", "not measured"))
        else:
            out.append(Verdict(target, requirement, text, "met" if ok else "not met"))

    thr = res.get("throughput")
    judge(
        "throughput",
        f">= {TARGET_RATE:,} lines/s sustained",
        thr,
        None if thr is None else thr >= TARGET_RATE,
        full_speed,
        _fmt(thr, " lines/s"),
        "max scenario",
    )
    ratio = result.get("ratio_to_ceiling")
    judge(
        "ceiling ratio",
        f">= {TARGET_CEILING_RATIO}x the ceiling",
        ratio,
        None if ratio is None else ratio >= TARGET_CEILING_RATIO,
        full_speed,
        "-" if ratio is None else f"{ratio:.3f}x",
        "max scenario",
    )
    lat = res["latency_ms"]["consume"]["p99"]
    if lat is None:
        lat = res["latency_ms"]["append"]["p99"]
    judge(
        "p99 latency",
        f"<= {TARGET_P99_MS:.0f} ms at {TARGET_P99_RATE:,} lines/s",
        lat,
        None if lat is None else lat <= TARGET_P99_MS,
        opts["rate"] == TARGET_P99_RATE,
        _fmt(lat, " ms", 1),
        "peak scenario",
    )
    rss = res.get("rss_peak_mib")
    judge(
        "memory",
        f"<= {TARGET_RSS_MIB:.0f} MiB RSS at full speed",
        rss,
        None if rss is None else rss <= TARGET_RSS_MIB,
        full_speed,
        _fmt(rss, " MiB", 1),
        "max scenario",
    )
    integrity_ok = res["lost"] == 0 and res["duplicated"] == 0
    out.append(
        Verdict(
            "no loss",
            "0 lost, 0 duplicated",
            f"{res['lost']} lost, {res['duplicated']} duplicated",
            "met" if integrity_ok else "not met",
        )
    )
    # The design document's load-test expectations (Kafka queue utilization, p95, errors).
    design = {"baseline": (0.30, 50.0, 0.0), "high": (0.70, 200.0, 0.0001), "peak": (0.90, 500.0, None)}
    if scenario in design:
        qmax, p95max, err_rate = design[scenario]
        q = res["queue_peak"]["producer"]
        out.append(
            Verdict(
                "design: Kafka queue",
                f"< {qmax:.0%}",
                _fmt(None if q is None else q * 100, " %", 1),
                "n/a" if q is None else ("met" if q < qmax else "not met"),
                "design doc",
            )
        )
        p95 = res["latency_ms"]["consume"]["p95"]
        out.append(
            Verdict(
                "design: latency p95",
                f"< {p95max:.0f} ms",
                _fmt(p95, " ms", 1),
                "n/a" if p95 is None else ("met" if p95 < p95max else "not met"),
                "design doc",
            )
        )
        if err_rate is not None:
            rate = res["error_rate"]
            out.append(
                Verdict(
                    "design: error rate",
                    "0 %" if err_rate == 0 else f"< {err_rate:.2%}",
                    f"{rate:.4%}",
                    "met" if rate <= err_rate else "not met",
                    "design doc",
                )
            )
    return out


def print_report(result: dict[str, Any], console: Console) -> None:
    opts = result["options"]
    res = result["results"]
    ceil = result.get("ceiling") or {}
    t = Table(title=f"log-capturer bench: {opts['scenario']} ({result['started_at']})", show_header=False)
    t.add_column("metric", style="bold")
    t.add_column("value")
    rate = "max" if opts["rate"] == 0 else f"{opts['rate']:,.0f} lines/s"
    t.add_row("load", f"{res['lines_expected']:,} lines of {opts['line_bytes']} B ({opts['format']}), {rate}")
    workers = opts.get("workers") or 1
    processes = f"a supervisor and {workers} worker processes" if workers > 1 else "one process"
    t.add_row("agent", f"{_input(opts)}; {processes}")
    t.add_row("kafka", f"acks={opts['acks']} compression={opts['compression']} at {opts['bootstrap']}")
    mbps = f" ({res['mb_per_s']:,.1f} MB/s)" if res.get("mb_per_s") else ""
    t.add_row("throughput", _fmt(res["throughput"], " lines/s") + mbps)
    for kind in ("consume", "append"):
        lat = res["latency_ms"][kind]
        if lat["p50"] is not None:
            label = f"latency ({kind})" if opts["rate"] else "backlog age (append)"
            t.add_row(label, f"p50 {lat['p50']} ms  p95 {lat['p95']} ms  p99 {lat['p99']} ms")
    q = res["queue_peak"]
    t.add_row(
        "queue peak",
        f"dispatcher {_fmt(_pct(q['dispatcher']), ' %', 1)}, producer {_fmt(_pct(q['producer']), ' %', 1)}",
    )
    rss, pss = _fmt(res["rss_peak_mib"], " MiB", 1), _fmt(res.get("pss_sampled_peak_mib"), " MiB", 1)
    t.add_row(
        "agent",
        f"RSS peak {rss} (PSS {pss}), CPU {_fmt(res['agent_cpu_seconds'], ' s', 1)}"
        f" ({_fmt(res['cpu_us_per_line'], ' us/line', 2)}), exit {result['agent']['exit_code']}",
    )
    threads = res.get("cpu_us_per_line_by_thread")
    if threads:
        top = list(threads.items())[:6]
        t.add_row("CPU by thread", ", ".join(f"{name} {us:.2f}" for name, us in top) + " us/line")
    t.add_row(
        "lines",
        f"{res['unique']:,} delivered, {res['lost']:,} lost, {res['duplicated']:,} duplicated, "
        f"{res['misrouted']:,} misrouted",
    )
    t.add_row("errors", ", ".join(f"{k} {v}" for k, v in res["errors"].items()))
    if ceil:
        what = f"{ceil['tool']} {ceil['version']}".strip()
        if ceil.get("error"):
            t.add_row("ceiling", f"{what}: failed: {ceil['error']}")
        else:
            ratio = result.get("ratio_to_ceiling")
            note = "" if opts["rate"] == 0 else " (rate-limited run: compare with max)"
            t.add_row(
                "ceiling",
                f"{what}: {_fmt(ceil['throughput'], ' lines/s')}"
                + (f" ({result['ceiling_mb_per_s']:,.1f} MB/s)" if result.get("ceiling_mb_per_s") else "")
                + (f"; ours = {ratio:.3f}x{note}" if ratio is not None else "")
                + (f"; CPU {ceil['cpu_us_per_line']:.2f} us/line" if ceil.get("cpu_us_per_line") else ""),
            )
        if ceil.get("fallback_reason"):
            t.add_row("", f"(fallback: {ceil['fallback_reason']})")
    keyed = result.get("ceiling_keyed")
    if keyed:
        if keyed.get("error"):
            t.add_row("keyed ceiling", f"{keyed['tool']}: not run: {keyed['error']}")
        else:
            ratio = result.get("ratio_to_keyed_ceiling")
            t.add_row(
                "keyed ceiling",
                f"{keyed['tool']} {keyed['version']}: {_fmt(keyed['throughput'], ' lines/s')}"
                + (f"; ours = {ratio:.3f}x" if ratio is not None else "")
                + (f"; CPU {keyed['cpu_us_per_line']:.2f} us/line" if keyed.get("cpu_us_per_line") else ""),
            )
    t.add_row("load average", f"before {result['load']['before']}, after {result['load']['after']}")
    console.print(t)
    v = Table(title="targets")
    for col in ("target", "requirement", "measured", "status", "note"):
        v.add_column(col)
    colors = {"met": "green", "not met": "red", "n/a": "dim"}
    for d in result["targets"]:
        v.add_row(
            d["target"],
            d["requirement"],
            d["measured"],
            f"[{colors[d['status']]}]{d['status']}[/]",
            d["note"],
        )
    console.print(v)


def _pct(x: float | None) -> float | None:
    return None if x is None else x * 100


def verdict_dicts(vs: list[Verdict]) -> list[dict[str, str]]:
    return [asdict(v) for v in vs]


def write_chart(result: dict[str, Any], series: dict[str, Any], path: Path) -> None:
    """Throughput, latency and memory/queue over the run, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opts = result["options"]
    res = result["results"]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    ax1.plot(
        series["throughput_t"], series["throughput"], label="agent (broker append times)", color="tab:blue"
    )
    if opts["rate"]:
        ax1.axhline(
            opts["rate"], color="tab:gray", linestyle="--", label=f"generator rate {opts['rate']:,.0f}/s"
        )
    ceil = (result.get("ceiling") or {}).get("throughput")
    if ceil and opts["rate"] == 0:
        ax1.axhline(
            ceil, color="tab:red", linestyle=":", label=f"ceiling ({result['ceiling']['tool']}) {ceil:,.0f}/s"
        )
    ax1.set_ylabel("lines / s")
    ax1.legend(loc="lower right", fontsize=8)
    ax1.grid(alpha=0.3)
    if opts["rate"]:
        ax2.plot(series["latency_t"], series["latency_p50"], label="p50", color="tab:green")
        ax2.plot(series["latency_t"], series["latency_p99"], label="p99", color="tab:orange")
        ax2.set_ylabel(f"latency ms ({series['latency_kind']})")
        if series["latency_p99"] and max(series["latency_p99"]) > 20 * max(1.0, min(series["latency_p50"])):
            ax2.set_yscale("log")
    else:
        # Everything was written before the agent started, so latency is only the backlog's age:
        # show progress instead, against the pace of the ceiling.
        # Each count closes its second: the curve starts at 0 when the first second begins.
        ts = series["throughput_t"]
        done = [0, *itertools.accumulate(series["throughput"])]
        ax2.plot(ts[:1] + [t + 1 for t in ts], done, label="lines in Kafka (agent)", color="tab:blue")
        if ceil and series["throughput_t"]:
            start = series["throughput_t"][0]
            end = start + res["lines_expected"] / ceil
            ax2.plot(
                [start, end],
                [0, res["lines_expected"]],
                color="tab:red",
                linestyle=":",
                label="at the ceiling's rate",
            )
        ax2.set_ylabel("lines shipped")
    ax2.legend(loc="upper left", fontsize=8)
    ax2.grid(alpha=0.3)
    ax3.plot(series["sample_t"], series["rss_mib"], label="agent RSS MiB", color="tab:purple")
    ax3.set_ylabel("RSS MiB")
    ax3.set_ylim(bottom=0)
    ax3.set_xlabel("seconds since the agent was started")
    ax3.grid(alpha=0.3)
    ax4 = ax3.twinx()
    ax4.plot(
        series["sample_t"],
        [x * 100 for x in series["dispatcher_util"]],
        label="dispatcher queue %",
        color="tab:brown",
        alpha=0.7,
    )
    ax4.plot(
        series["sample_t"],
        [x * 100 for x in series["producer_util"]],
        label="producer queue %",
        color="tab:cyan",
        alpha=0.7,
    )
    ax4.set_ylabel("queue utilization %")
    ax4.set_ylim(0, 105)
    lines = ax3.get_legend_handles_labels()
    more = ax4.get_legend_handles_labels()
    ax3.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    lat = res["latency_ms"]["consume"]["p99"]
    latency = f", p99 {_fmt(lat, ' ms', 1)}" if opts["rate"] else ""
    ratio = result.get("ratio_to_ceiling")
    vs = f" ({ratio:.3f}x the ceiling)" if ratio is not None and not opts["rate"] else ""
    fig.suptitle(
        f"{opts['scenario']}: {_fmt(res['throughput'], ' lines/s')}{vs}{latency}, "
        f"RSS peak {_fmt(res['rss_peak_mib'], ' MiB', 0)}, lost {res['lost']}, dup {res['duplicated']}\n"
        f"acks={opts['acks']} {opts['compression']} {opts['line_bytes']} B {opts['format']} lines; "
        f"{_input(opts)}, {opts.get('workers') or 1} worker(s); "
        f"{result['machine']['cores']} cores; {result['started_at']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _input(opts: dict[str, Any]) -> str:
    """What the agent read: files it tailed, or HTTP ingest requests."""
    if opts.get("source") == "otlp":
        return f"OTLP/HTTP, protobuf requests of {opts.get('http_batch'):,} log records"
    if opts.get("source") == "http":
        return f"HTTP ingest, {opts.get('http_format')} requests of {opts.get('http_batch'):,} lines"
    return f"{opts.get('files', 1)} file(s)"
