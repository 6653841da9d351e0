"""``log-capturer status``: a terminal view of a running agent, from ``/health``, ``/stats`` and
``/dlq/stats`` (when the agent has a local DLQ).

Two samples ``interval`` apart give the rates: lines in (read by the sources
and queued) and lines out (acknowledged by Kafka or parked in the DLQ), per
second, and per topic. The view shows the overall state, each sink's state,
message and circuit breaker, each source's state and restarts (with the error
while a crashed source is restarted, or the last one), every health check
(queue, DLQ, ...), the queue fill and the DLQ figures; with a Kafka source, its records per
second and a row per assigned partition (committed offset, high watermark, lag, paused).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import orjson
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

STYLE = {"healthy": "bold green", "degraded": "bold yellow", "unhealthy": "bold red"}


class AgentUnreachable(RuntimeError):
    """The agent's API did not answer (not running, wrong --api, or not JSON)."""


@dataclass(frozen=True)
class Sample:
    at: float
    health: dict[str, Any]
    stats: dict[str, Any]
    dlq: dict[str, Any] | None = None


def _get(url: str, timeout: float, missing_ok: bool = False) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:
        if missing_ok and exc.code == 404:
            return {}
        body = exc.read()  # /health answers 503 with its JSON when not healthy
    except OSError as exc:
        raise AgentUnreachable(f"{url}: {getattr(exc, 'reason', exc)}") from None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AgentUnreachable(f"{url} did not answer JSON: {body[:200]!r}") from None
    if not isinstance(data, dict):
        raise AgentUnreachable(f"{url} did not answer a JSON object")
    return data


def sample(api: str, timeout: float = 5.0) -> Sample:
    base = api.rstrip("/")
    stats = _get(base + "/stats", timeout)
    health = _get(base + "/health", timeout)
    return Sample(time.monotonic(), health, stats)


def sample_dlq(api: str, timeout: float = 5.0) -> dict[str, Any]:
    """``/dlq/stats`` (entries and bytes in the local store), or {} when the agent has none."""
    return _get(api.rstrip("/") + "/dlq/stats", timeout, missing_ok=True)


#: Ways a sink finishes with a line: delivered, parked locally (overflowed lines are a part of
#: ``parked``, not counted again), sent to the DLQ topic.
_OUT = ("delivered", "parked", "sent_to_dlq_topic")


def _out_by_sink(stats: dict[str, Any]) -> dict[str, int]:
    """Lines each sink finished with (delivered or parked), by sink name."""
    return {name: sum(int(s.get(k, 0)) for k in _OUT) for name, s in stats.get("sinks", {}).items()}


def _by_topic(stats: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in stats.get("sinks", {}).values():
        for topic, n in s.get("delivered_by_topic", {}).items():
            out[topic] = out.get(topic, 0) + int(n)
    return out


def _breaker(sink: dict[str, Any], sink_stats: dict[str, Any]) -> str:
    for source in (sink, sink_stats):
        value = source.get("circuit_breaker")
        if isinstance(value, dict):
            value = value.get("state")
        if value is not None:
            return str(value)
    return "-"


def view(prev: Sample, cur: Sample) -> dict[str, Any]:
    """What the terminal shows, as data (``--json`` prints it)."""
    dt = max(cur.at - prev.at, 1e-6)
    h, st = cur.health, cur.stats
    disp = st.get("dispatcher", {})
    lines_in = (int(disp.get("lines_in", 0)) - int(prev.stats.get("dispatcher", {}).get("lines_in", 0))) / dt
    # Each sink finishes with every line routed to it: with several sinks, the agent's rate out
    # is the busiest sink's (the sum would count a line once per sink); each sink has its own.
    out_before = _out_by_sink(prev.stats)
    sink_out = {name: (n - out_before.get(name, 0)) / dt for name, n in _out_by_sink(st).items()}
    lines_out = max(sink_out.values(), default=0.0)
    before = _by_topic(prev.stats)
    topics = {t: round((n - before.get(t, 0)) / dt, 1) for t, n in sorted(_by_topic(st).items())}
    sink_stats = st.get("sinks", {})
    sinks = [
        {
            "name": s.get("name", "?"),
            "status": s.get("status", "?"),
            "message": s.get("message", ""),
            "circuit_breaker": _breaker(s, sink_stats.get(s.get("name", ""), {})),
            "outstanding": sink_stats.get(s.get("name", ""), {}).get("outstanding"),
            "lines_out_per_second": round(sink_out.get(s.get("name", ""), 0.0), 1),
        }
        for s in h.get("services", {}).get("sinks", [])
    ]
    sources = [_source(s) for s in h.get("services", {}).get("sources", []) if isinstance(s, dict)]
    checks = {
        name: {"status": c.get("status", "?"), **{k: v for k, v in c.items() if k != "status"}}
        for name, c in h.get("checks", {}).items()
        if isinstance(c, dict)
    }
    return {
        "status": h.get("status", "?"),
        "version": h.get("version", ""),
        "uptime": h.get("uptime", ""),
        "interval_seconds": round(dt, 3),
        "lines_in_per_second": round(lines_in, 1),
        "lines_out_per_second": round(lines_out, 1),
        "topics_per_second": topics,
        "queue_utilization": disp.get("queue_utilization", 0.0),
        "queue_size": disp.get("queue_size", 0),
        "queue_capacity": disp.get("queue_capacity", 0),
        "sinks": sinks,
        "sources": sources,
        "checks": checks,
        "dlq": _dlq(st.get("dlq", {}), cur.dlq or {}),
        "transactions": _transactions(prev.stats, st, dt),
        "files": {
            k: st.get("files", {}).get(k)
            for k in ("monitored", "open_files", "in_flight_lines")
            if k in st.get("files", {})
        }
        | {"lag_bytes": sum(st.get("files", {}).get("lag_bytes", {}).values())},
        "kafka": _kafka(prev.stats, st, h, dt),
    }


def _kafka(
    prev: dict[str, Any], cur: dict[str, Any], health: dict[str, Any], dt: float
) -> dict[str, Any] | None:
    """The Kafka source (``/stats`` ``kafka``), when the agent runs one: records consumed per
    second, the totals, and a row per assigned partition (committed offset, high watermark,
    lag, records in flight, paused). None without a Kafka source."""
    sources = health.get("services", {}).get("sources", [])
    k = cur.get("kafka")
    if not isinstance(k, dict) or not any(
        isinstance(s, dict) and s.get("name") == "kafka_source" for s in sources
    ):
        return None
    consumed = int(k.get("consumed", 0))
    before = prev.get("kafka", {})
    rows = []
    for key, p in sorted(k.get("partitions", {}).items()):
        if not isinstance(p, dict):
            continue
        topic, _, partition = key.rpartition(":")
        rows.append(
            {
                "topic": p.get("topic", topic),
                "partition": p.get("partition", partition),
                "committed": p.get("committed", -1),
                "high_watermark": p.get("high_watermark"),
                "lag": p.get("lag"),
                "in_flight": p.get("in_flight", 0),
                "paused": bool(p.get("paused", k.get("paused", False))),
            }
        )
    return {
        "consumed_per_second": round((consumed - int(before.get("consumed", 0))) / dt, 1),
        "consumed": consumed,
        "lag": k.get("lag", 0),
        "in_flight": k.get("in_flight", 0),
        "paused": bool(k.get("paused", False)),
        "rebalances": k.get("rebalances", 0),
        "rejected": k.get("rejected", 0),
        "commit_errors": k.get("commit_errors", 0),
        "partitions": rows,
    }


def _transactions(prev: dict[str, Any], cur: dict[str, Any], dt: float) -> dict[str, dict[str, Any]]:
    """Per sink in exactly-once mode (``/stats`` ``sinks.<name>.transactions``): commits per
    second over the interval, the totals, records per transaction and the commit's duration."""
    out: dict[str, dict[str, Any]] = {}
    for name, s in cur.get("sinks", {}).items():
        t = s.get("transactions") if isinstance(s, dict) else None
        if not isinstance(t, dict):
            continue
        before = prev.get("sinks", {}).get(name, {}).get("transactions", {})
        committed = int(t.get("committed", 0))
        out[name] = {
            "transactional_id": t.get("transactional_id", ""),
            "committed_per_second": round((committed - int(before.get("committed", 0))) / dt, 1),
            "committed": committed,
            "aborted": int(t.get("aborted", 0)),
            "average_records": t.get("average_records", 0.0),
            "average_commit_seconds": t.get("average_commit_seconds", 0.0),
            "last_commit_seconds": t.get("last_commit_seconds", 0.0),
            "last_abort": t.get("last_abort", ""),
        }
    return out


def _source(s: dict[str, Any]) -> dict[str, Any]:
    """A source of ``/health``: its state, restarts, and why (the error now, or the last one)."""
    name = str(s.get("name", "?"))
    if "worker" in s:
        name += f" (worker {s['worker']})"
    message = str(s.get("message", ""))
    if not message and s.get("last_error"):
        message = f"last error: {s['last_error']}"
    return {
        "name": name,
        "status": s.get("status", "?"),
        "restarts": s.get("restarts", 0),
        "message": message,
    }


def _dlq(stats: dict[str, Any], store: dict[str, Any]) -> dict[str, Any]:
    """The DLQ's size now (``/dlq/stats``) and what was written since start (``/stats``)."""
    out: dict[str, Any] = {
        k: store[k] for k in ("entries", "size_bytes", "due_for_reprocessing") if k in store
    }
    out.update({k: v for k, v in stats.items() if isinstance(v, int | float) or (isinstance(v, str) and v)})
    return out


def _status(word: str) -> Text:
    return Text(word, style=STYLE.get(word, "bold"))


def _figures(data: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v}" for k, v in data.items() if isinstance(v, int | float | str) and v != "")


def render(v: dict[str, Any], api: str) -> RenderableType:
    head = Text.assemble(
        ("agent ", "bold"),
        (api, "cyan"),
        "  ",
        _status(v["status"]),
        f"  version {v['version']}  up {v['uptime']}",
    )
    flow = Table(title="flow", title_justify="left", expand=False)
    flow.add_column("lines in/s", justify="right")
    flow.add_column("lines out/s", justify="right")
    flow.add_column("queue", justify="right")
    flow.add_column("DLQ")
    flow.add_column("files")
    flow.add_row(
        f"{v['lines_in_per_second']:,.1f}",
        f"{v['lines_out_per_second']:,.1f}",
        f"{float(v['queue_utilization']):.1%} ({v['queue_size']:,}/{v['queue_capacity']:,})",
        _figures(v["dlq"]) or "-",
        _figures(v["files"]) or "-",
    )
    sinks = Table(title="sinks", title_justify="left")
    for col in ("name", "status", "breaker", "lines out/s", "outstanding", "message"):
        sinks.add_column(col, overflow="fold")
    for s in v["sinks"]:
        sinks.add_row(
            s["name"],
            _status(s["status"]),
            s["circuit_breaker"],
            f"{s['lines_out_per_second']:,.1f}",
            "-" if s["outstanding"] is None else f"{s['outstanding']:,}",
            s["message"],
        )
    sources = Table(title="sources", title_justify="left")
    for col in ("name", "status", "restarts", "message"):
        sources.add_column(col, overflow="fold")
    for src in v["sources"]:
        sources.add_row(src["name"], _status(src["status"]), str(src["restarts"]), src["message"])
    checks = Table(title="checks", title_justify="left")
    for col in ("check", "status", "details"):
        checks.add_column(col, overflow="fold")
    for name, c in v["checks"].items():
        checks.add_row(name, _status(c["status"]), _figures({k: x for k, x in c.items() if k != "status"}))
    parts: list[RenderableType] = [head, flow, sinks, sources, checks]
    if v.get("transactions"):
        txns = Table(title="transactions (exactly-once)", title_justify="left")
        for col in ("sink", "transactional id", "commits/s", "committed", "aborted", "records/txn", "commit"):
            txns.add_column(col, overflow="fold")
        txns.add_column("last abort", overflow="fold")
        for name, t in v["transactions"].items():
            txns.add_row(
                name,
                str(t["transactional_id"]),
                f"{t['committed_per_second']:,.1f}",
                f"{t['committed']:,}",
                Text(f"{t['aborted']:,}", style="bold red" if t["aborted"] else ""),
                f"{float(t['average_records']):,.1f}",
                f"{float(t['average_commit_seconds']) * 1000:,.1f} ms avg, "
                f"{float(t['last_commit_seconds']) * 1000:,.1f} ms last",
                str(t["last_abort"]) or "-",
            )
        parts.append(txns)
    if v.get("kafka") is not None:
        parts.append(_kafka_table(v["kafka"]))
    if v["topics_per_second"]:
        topics = Table(title="delivered per topic", title_justify="left")
        topics.add_column("topic")
        topics.add_column("records/s", justify="right")
        for t, rate in v["topics_per_second"].items():
            topics.add_row(t, f"{rate:,.1f}")
        parts.append(topics)
    return Group(*parts)


def _offset(value: Any) -> str:
    """An offset or lag: '-' when unknown (None, or -1: nothing committed)."""
    return "-" if value is None or (isinstance(value, int) and value < 0) else f"{value:,}"


def _kafka_table(k: dict[str, Any]) -> Table:
    title = (
        f"kafka source  {k['consumed_per_second']:,.1f} records/s  consumed={k['consumed']:,}  "
        f"lag={k['lag']:,}  in_flight={k['in_flight']:,}  rebalances={k['rebalances']}"
    )
    if k["rejected"] or k["commit_errors"]:
        title += f"  rejected={k['rejected']:,}  commit_errors={k['commit_errors']:,}"
    table = Table(title=title, title_justify="left")
    for col in ("topic", "partition", "committed", "high watermark", "lag", "in flight", "paused"):
        table.add_column(col, justify="left" if col == "topic" else "right", overflow="fold")
    for p in k["partitions"]:
        table.add_row(
            str(p["topic"]),
            str(p["partition"]),
            _offset(p["committed"]),
            _offset(p["high_watermark"]),
            _offset(p["lag"]),
            f"{p['in_flight']:,}",
            Text("yes", style="bold yellow") if p["paused"] else "no",
        )
    if not k["partitions"]:
        table.add_row("(no partition assigned)", "", "", "", "", "", "")
    return table
