"""The syslog source under supervision: a crashing handler, a crashing loop, a stop while it waits.

Real UDP datagrams on 127.0.0.1 to the real listener, the real dispatcher, an in-memory sink.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from log_capturer.config.schema import SyslogConfig
from log_capturer.devtools.kafka_local import free_port
from log_capturer.observability.metrics import Metrics
from log_capturer.sources.supervise import Backoff
from log_capturer.sources.syslog import source as syslog_source
from log_capturer.sources.syslog.source import SyslogSource
from tests.support import wait_until
from tests.unit.sources.harness import MemorySink, make_dispatcher


class Env:
    def __init__(self) -> None:
        self.sink = MemorySink()
        self.metrics = Metrics()
        self.dispatcher = make_dispatcher(self.sink, self.metrics)
        self.port = free_port()
        self.source: SyslogSource | None = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def start(self, backoff: float, batch_wait: str = "10ms") -> SyslogSource:
        cfg = SyslogConfig(
            enabled=True,
            udp={"host": "127.0.0.1", "port": self.port},
            tcp={"enabled": False},
            batch_wait=batch_wait,
        )
        src = self.source = SyslogSource(cfg, self.dispatcher, self.metrics)
        src.supervisor.backoff = Backoff(backoff, backoff)
        src.start()
        return src

    def send(self, text: str) -> None:
        self.sock.sendto(f"<13>Jan  1 00:00:00 host app: {text}".encode(), ("127.0.0.1", self.port))

    def received(self, text: str) -> bool:
        return any(text in line for line in self.sink.lines())

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def crash_the_loop_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The loop's next turn raises (as a failing selector would), once."""
        assert self.source is not None
        loop: Any = self.source._loop
        real = loop._run_once
        fired: list[bool] = []

        def run_once() -> None:
            if not fired:
                fired.append(True)
                raise RuntimeError("selector failed")
            real()

        monkeypatch.setattr(loop, "_run_once", run_once)
        loop.call_soon_threadsafe(lambda: None)  # wake the loop so that it turns now

    def close(self) -> None:
        if self.source is not None:
            self.source.stop(5)
        self.dispatcher.close(5)
        self.sock.close()


@pytest.fixture
def env() -> Iterator[Env]:
    e = Env()
    yield e
    e.close()


def test_a_crashing_handler_degrades_the_source_until_a_batch_is_handed_over_again(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = syslog_source.parse

    def parse(text: str) -> Any:
        if "poison" in text:
            raise ValueError("cannot parse")
        return real(text)

    monkeypatch.setattr(syslog_source, "parse", parse)
    src = env.start(backoff=0.01)
    env.send("poison")
    wait_until(lambda: src.supervisor.crashes == 1, 10, "the handler to crash")
    h = src.health()
    assert h["status"] == "degraded"
    assert h["message"] == "crashed: ValueError: cannot parse; restarts: 0"
    assert env.sample("errors_total", component="syslog_source", error_type="crash") == 1
    assert env.sample("source_lines_dropped_total", source="syslog", reason="crash") == 1
    env.send("after the crash")
    wait_until(lambda: env.received("after the crash"), 10, "a message after the crash")
    wait_until(lambda: src.health()["status"] == "healthy", 10, "healthy again")
    assert src.supervisor.restarts == 0


def test_a_crashed_loop_is_restarted_and_receives_again(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    src = env.start(backoff=0.01)
    env.send("before")
    wait_until(lambda: env.received("before"), 10, "a first message")
    env.crash_the_loop_once(monkeypatch)
    wait_until(lambda: src.supervisor.restarts == 1, 10, "the loop to be restarted")
    env.send("after")
    wait_until(lambda: env.received("after"), 10, "a message after the restart")
    wait_until(lambda: src.health()["status"] == "healthy", 10, "healthy again")
    assert src.health()["last_error"] == "RuntimeError: selector failed"
    assert env.sample("errors_total", component="syslog_source", error_type="crash") == 1


def test_a_stop_while_waiting_to_restart_still_hands_over_what_is_buffered(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = env.start(backoff=3600, batch_wait="10s")
    env.send("buffered")
    wait_until(lambda: src._pending, 10, "the message to be buffered")
    env.crash_the_loop_once(monkeypatch)
    wait_until(lambda: src.supervisor.crashes == 1, 10, "the loop to crash")
    assert src.health()["status"] == "degraded" and src.supervisor.restarts == 0
    assert not env.received("buffered")  # the loop is down: its batch timer cannot fire
    src.stop(5)
    wait_until(lambda: env.received("buffered"), 10, "the buffered message")


def test_a_failed_udp_drop_check_is_scheduled_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The periodic check of the kernel's UDP drop counter keeps running after one check failed."""
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, _context: None)  # the source's handler logs it
    source = SyslogSource.__new__(SyslogSource)
    source._loop, source.stopping = loop, threading.Event()
    calls: list[int] = []

    def count() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("a failed read of /proc/net/udp")
        if len(calls) == 3:
            source.stopping.set()

    monkeypatch.setattr(source, "_count_udp_drops", count)
    monkeypatch.setattr(syslog_source, "UDP_DROPS_INTERVAL", 0.01)
    try:
        loop.call_soon(source._check_udp_drops)
        loop.run_until_complete(asyncio.sleep(0.5))
    finally:
        loop.close()
    assert len(calls) == 3
