"""The live status line of ``log-capturer run``: lines read and shipped per second, per topic."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.text import Text

if TYPE_CHECKING:
    from log_capturer.app import Agent

#: (monotonic time, lines in, per sink name: lines delivered by topic, or by file for a file sink)
Snapshot = tuple[float, int, dict[str, dict[str, int]]]


class StatusLine:
    def __init__(self, agent: Agent, console: Console, interval: float = 1.0) -> None:
        self.agent = agent
        self.console = console
        self.interval = interval if console.is_terminal else max(interval, 10.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _snapshot(self) -> Snapshot:
        a = self.agent
        by_sink: dict[str, dict[str, int]] = {}
        for sink in a.sinks:
            delivered = sink.stats().get("delivered_by_topic")
            if isinstance(delivered, dict):
                by_sink[sink.name] = {topic: int(n) for topic, n in delivered.items()}
        return time.monotonic(), a.dispatcher.lines_in, by_sink

    def render(self, prev: Snapshot, cur: Snapshot) -> Text:
        dt = max(cur[0] - prev[0], 1e-6)
        read_rate = (cur[1] - prev[1]) / dt
        text = Text()
        text.append(f"read {read_rate:,.0f}/s", style="bold cyan")
        several = len(cur[2]) > 1
        for sink, topics in sorted(cur[2].items()):
            before = prev[2].get(sink, {})
            shipped = sum(topics.values()) - sum(before.values())
            text.append(f"  {sink} shipped " if several else "  shipped ")
            text.append(f"{shipped / dt:,.0f}/s", style="bold green")
            for t in sorted(topics):
                rate = (topics[t] - before.get(t, 0)) / dt
                text.append(f"  {t} {rate:,.0f}/s")
            text.append(f"  total shipped {sum(topics.values()):,}")
        util = self.agent.dispatcher.queue.utilization
        text.append(f"  queue {util:.0%}")
        health = self.agent.sink_health()
        bad = [h for h in health if h.status != "healthy"]
        if bad:
            text.append(f"  {bad[0].name}: {bad[0].status} ({bad[0].message[:60]})", style="bold red")
        return text

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        prev = self._snapshot()
        if self.console.is_terminal:
            with Live(
                Text("starting..."), console=self.console, refresh_per_second=4, transient=False
            ) as live:
                while not self._stop.wait(self.interval):
                    cur = self._snapshot()
                    live.update(self.render(prev, cur))
                    prev = cur
        else:
            while not self._stop.wait(self.interval):
                cur = self._snapshot()
                self.console.print(self.render(prev, cur))
                prev = cur

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
