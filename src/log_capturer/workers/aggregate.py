"""The whole agent's answers, made from its workers' (``/health``, ``/stats``, ``/positions``, ``/metrics``).

Pure functions over what each worker's own endpoint answered, so the rules are
easy to read and to test:

- ``/health``: the worst status of every worker's answer and of the workers
  themselves (a worker down or restarting makes the agent ``degraded``; all
  down, ``unhealthy``); ``services.sinks`` and ``services.sources`` list every
  worker's entries, each with its ``worker``; every check is the worst of the
  workers' with each worker's detail under ``workers``; ``checks.workers``
  lists the processes (pid, state, restarts, last exit).
- ``/stats``: the top level has the shape of one agent's ``/stats`` for the
  whole agent: counts and capacities are summed over the workers;
  utilizations, peaks and thresholds are the highest; ratios are averaged;
  distinct texts are joined with ``; ``; ``workers`` holds each worker's own
  answer.
- ``/positions``: the union of the workers' entries, plus which worker
  follows which file or container (``workers``).
- ``/metrics``: every worker's samples with a ``worker`` label, each family
  once (one ``# HELP``/``# TYPE``), then the supervisor's own metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from log_capturer.observability.health import worst

#: One worker's answer: (index, JSON body) or (index, None) when it did not answer.
Answer = tuple[int, dict[str, Any] | None]


def workers_check(processes: Sequence[dict[str, Any]], silent: Iterable[int] = ()) -> dict[str, Any]:
    """The ``workers`` check: healthy when every worker runs (and answered), unhealthy when none does.

    ``silent``: workers that run but did not answer the supervisor (hung, or too busy).
    """
    quiet = set(silent)
    running = sum(1 for p in processes if p.get("state") == "running" and p["index"] not in quiet)
    if running == len(processes):
        status = "healthy"
    elif running == 0:
        status = "unhealthy"
    else:
        status = "degraded"
    out: dict[str, Any] = {
        "status": status,
        "count": len(processes),
        "running": running,
        "restarts": sum(int(p.get("restarts", 0)) for p in processes),
        "workers": list(processes),
    }
    down = [str(p["index"]) for p in processes if p.get("state") != "running"]
    problems = []
    if down:
        problems.append(f"worker(s) {', '.join(down)} not running (restarting); their files wait on disk")
    if quiet:
        problems.append(f"worker(s) {', '.join(map(str, sorted(quiet)))} did not answer")
    if problems:
        out["message"] = "; ".join(problems)
    return out


def merge_health(answers: Sequence[Answer], processes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``GET /health`` of the whole agent from each worker's (None: it did not answer)."""
    first = next((body for _, body in answers if body is not None), None)
    out: dict[str, Any] = dict(first or {})
    sinks: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    checks: dict[str, dict[str, Any]] = {}
    statuses: list[str] = []
    for index, body in answers:
        if body is None:
            continue
        statuses.append(str(body.get("status", "unhealthy")))
        services = body.get("services", {})
        sinks += [{**s, "worker": index} for s in services.get("sinks", [])]
        sources += [{**s, "worker": index} for s in services.get("sources", [])]
        for name, check in body.get("checks", {}).items():
            merged = checks.setdefault(name, {"status": "healthy", "workers": {}})
            merged["workers"][str(index)] = check
            merged["status"] = worst([merged["status"], str(check.get("status", "unhealthy"))])
    running = {p["index"] for p in processes if p.get("state") == "running"}
    wcheck = workers_check(processes, [i for i, body in answers if body is None and i in running])
    checks["workers"] = wcheck
    out["status"] = worst([*statuses, wcheck["status"]])
    out["services"] = {"sinks": sinks, "sources": sources}
    out["checks"] = checks
    return out


#: How numbers under a key are combined (the first rule whose word is in the key; else summed).
#: Nested keys inherit the rule of their parent (compression_ratio -> {topic: ratio}).
_RULES: tuple[tuple[str, str], ...] = (
    ("utilization", "max"),
    ("peak", "max"),
    ("threshold", "max"),
    ("retry_in_seconds", "max"),
    ("ratio", "mean"),
    ("uptime", "max"),
    # Exactly-once's transactions: the workers' averages (not weighted), the slowest last commit.
    ("average", "mean"),
    ("last_commit_seconds", "max"),
)


def _rule(key: str, inherited: str) -> str:
    return next((rule for word, rule in _RULES if word in key), inherited)


def _merge_values(key: str, values: list[Any], rule: str = "sum") -> Any:
    rule = _rule(key, rule)
    values = [v for v in values if v is not None]
    if not values:
        return None
    if all(isinstance(v, dict) for v in values):
        keys: dict[str, None] = {}
        for v in values:
            keys.update(dict.fromkeys(v))
        return {k: _merge_values(k, [v[k] for v in values if k in v], rule) for k in keys}
    if all(isinstance(v, bool) for v in values):
        return any(values)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        if rule == "max":
            return max(values)
        if rule == "mean":
            return round(sum(values) / len(values), 6)
        total = sum(values)
        return round(total, 6) if isinstance(total, float) else total
    if all(isinstance(v, list) for v in values):
        return [x for v in values for x in v]
    if all(isinstance(v, str) for v in values):
        distinct = list(dict.fromkeys(v for v in values if v))
        return "; ".join(distinct)
    return values[0]


def merge_stats(answers: Sequence[Answer], supervisor: dict[str, Any]) -> dict[str, Any]:
    """``GET /stats`` of the whole agent: the sum of the workers', and each worker's own."""
    bodies = [body for _, body in answers if body is not None]
    out: dict[str, Any] = _merge_values("", bodies) if bodies else {}
    out.update(supervisor)
    out["workers"] = [{"index": index, "stats": body} for index, body in answers]
    return out


def merge_positions(answers: Sequence[Answer]) -> dict[str, Any]:
    """``GET /positions``: every worker's files and containers, and who follows what."""
    files: dict[str, Any] = {}
    containers: dict[str, Any] = {}
    by_worker: dict[str, dict[str, list[str]]] = {}
    for index, body in answers:
        if body is None:
            continue
        f, c = body.get("files", {}), body.get("containers", {})
        files.update(f)
        containers.update(c)
        by_worker[str(index)] = {"files": sorted(f), "containers": sorted(c)}
    return {"files": files, "containers": containers, "workers": by_worker}


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?(\s.*)$")


def _with_label(line: str, label: str) -> str:
    m = _SAMPLE.match(line)
    if m is None:
        return line
    name, labels, rest = m.groups()
    if labels is None or labels == "{}":
        return f"{name}{{{label}}}{rest}"
    return f"{name}{{{label},{labels[1:]}{rest}"


def merge_metrics(texts: Sequence[tuple[int, str]], own: str = "") -> str:
    """Prometheus text of the whole agent: each worker's samples with ``worker="<index>"``.

    A family (``# HELP``/``# TYPE`` and its samples) appears once, with the
    samples of every worker; ``own`` (the supervisor's metrics) is appended as
    it is.
    """
    order: list[str] = []
    head: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for index, text in texts:
        label = f'worker="{index}"'
        family = ""
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                name = line.split(" ", 3)[2]
                if name != family:
                    family = name
                    if name not in head:
                        order.append(name)
                        head[name] = []
                        samples[name] = []
                if len(head[name]) < 2 and line not in head[name]:
                    head[name].append(line)
                continue
            if line.startswith("#"):
                continue
            if not family:
                family = line.split("{", 1)[0].split(" ", 1)[0]
                if family not in head:
                    order.append(family)
                    head[family] = []
                    samples[family] = []
            samples[family].append(_with_label(line, label))
    out: list[str] = []
    for name in order:
        out += head[name]
        out += samples[name]
    text = "\n".join(out) + ("\n" if out else "")
    return text + own
