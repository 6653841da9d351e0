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


class StatusLine:
    def __init__(self, agent: Agent, console: Console, interval: float = 1.0) -> None:
        self.agent = agent
        self.console = console
        self.interval = interval if console.is_terminal else max(interval, 10.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _snapshot(self) -> tuple[float, int, dict[str, int]]:
        a = self.agent
        by_topic: dict[str, int] = {}
        for sink in a.sinks:
            delivered = sink.stats().get("delivered_by_topic")
            if isinstance(delivered, dict):
                for topic, n in delivered.items():
                    by_topic[topic] = by_topic.get(topic, 0) + int(n)
        return time.monotonic(), a.dispatcher.lines_in, by_topic

    def render(self, prev: tuple[float, int, dict[str, int]], cur: tuple[float, int, dict[str, int]]) -> Text:
        dt = max(cur[0] - prev[0], 1e-6)
        read_rate = (cur[1] - prev[1]) / dt
        topics = sorted(cur[2])
        shipped = sum(cur[2].values()) - sum(prev[2].values())
        text = Text()
        text.append(f"read {read_rate:,.0f}/s", style="bold cyan")
        text.append("  shipped ")
        text.append(f"{shipped / dt:,.0f}/s", style="bold green")
        util = self.agent.dispatcher.queue.utilization
        text.append(f"  queue {util:.0%}")
        for t in topics:
            rate = (cur[2][t] - prev[2].get(t, 0)) / dt
            text.append(f"  {t} {rate:,.0f}/s")
        text.append(f"  total shipped {sum(cur[2].values()):,}")
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
