"""What the network sources share: the listener thread, chunks of groups, acknowledgement futures."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from log_capturer.record import Chunk, Origin
from log_capturer.sources.base import SourceStartError
from log_capturer.sources.listener import Group, all_acked_future, chunks_of, start_listener
from log_capturer.sources.syslog.tls import TLSSetupError


def test_a_bound_listener_runs_bound_then_serve_in_its_thread() -> None:
    loop = asyncio.new_event_loop()
    calls: list[tuple[str, str]] = []
    go = threading.Event()

    async def bind() -> None:
        calls.append(("bind", threading.current_thread().name))

    def bound() -> None:
        calls.append(("bound", threading.current_thread().name))

    def serve() -> None:
        calls.append(("serve", threading.current_thread().name))
        go.wait(10)
        loop.close()

    thread = start_listener("test-listener", loop, bind, serve, lambda exc: "unused", bound)
    assert calls[:2] == [("bind", "test-listener"), ("bound", "test-listener")]
    go.set()
    thread.join(10)
    assert not thread.is_alive() and loop.is_closed()
    assert calls[2] == ("serve", "test-listener")


def test_a_taken_port_is_a_start_error_with_the_callers_text() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    loop = asyncio.new_event_loop()

    async def bind() -> None:
        await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", port)

    served: list[bool] = []
    try:
        with pytest.raises(SourceStartError, match=rf"cannot listen on {port}: .*; change test.port"):
            start_listener(
                "test-listener",
                loop,
                bind,
                lambda: served.append(True),
                lambda exc: f"cannot listen on {port}: {exc.strerror or exc}; change test.port",
            )
    finally:
        taken.close()
    assert loop.is_closed() and not served


def test_unusable_tls_files_are_a_start_error_and_other_errors_are_raised_as_they_are() -> None:
    async def bad_tls() -> None:
        raise TLSSetupError("test.tls.cert_file: /x.pem cannot be read; fix it")

    with pytest.raises(SourceStartError, match=r"test\.tls\.cert_file: /x\.pem cannot be read"):
        start_listener("test-listener", asyncio.new_event_loop(), bad_tls, lambda: None, str)

    async def broken() -> None:
        raise RuntimeError("not a start error")

    with pytest.raises(RuntimeError, match="not a start error"):
        start_listener("test-listener", asyncio.new_event_loop(), broken, lambda: None, str)


def test_chunks_of_groups_carry_fields_levels_and_timestamps_only_where_given() -> None:
    plain = Group(Origin("t", "a"), ["one", "two"], [None, None], [None, None], [None, None])
    rich = Group(Origin("t", "b"), ["three", "four"], [{"k": 1}, None], [None, "error"], [None, 7])
    first, second = chunks_of([plain, rich])
    assert (first.lines, first.meta, first.preset_levels, first.timestamps) == (
        ["one", "two"],
        None,
        None,
        None,
    )
    assert second.meta == [{"k": 1}, None] and second.preset_levels == [None, "error"]
    assert second.timestamps == [second.read_time_ns, 7]
    assert first.read_time_ns == second.read_time_ns


def test_all_acked_future_is_done_once_every_chunk_is_acknowledged_from_other_threads() -> None:
    async def run() -> None:
        chunks = [Chunk(Origin("t", "a"), ["x", "y"]), Chunk(Origin("t", "b"), ["z"])]
        chunks[0].expect(2, None)
        chunks[1].expect(1, None)
        fut = all_acked_future(asyncio.get_running_loop(), chunks)
        chunks[0].ack(2)
        await asyncio.sleep(0.01)
        assert not fut.done()  # one chunk is not acknowledged yet
        threading.Thread(target=chunks[1].ack).start()
        await asyncio.wait_for(fut, 5)
        # Chunks acknowledged before the future was made, and none at all: done at once.
        await asyncio.wait_for(all_acked_future(asyncio.get_running_loop(), chunks), 5)
        await asyncio.wait_for(all_acked_future(asyncio.get_running_loop(), []), 5)

    asyncio.run(run())


def test_all_acked_future_of_a_closed_loop_does_not_raise_on_the_sink_thread() -> None:
    loop = asyncio.new_event_loop()
    chunk = Chunk(Origin("t", "a"), ["x"])
    chunk.expect(1, None)
    all_acked_future(loop, [chunk])
    loop.close()
    chunk.ack()
    assert chunk.done
