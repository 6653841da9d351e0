"""Summaries of py-spy's folded stacks (no process attached)."""

from __future__ import annotations

from pathlib import Path

from log_capturer.devtools.bench.profile import summarize

PROC = 'process 10:"python -m log_capturer run"'
DISPATCH = f"{PROC};thread (0x1): dispatch-0;_bootstrap (threading.py:995)"
WORK = "_work (log_capturer/pipeline/dispatcher.py:80)"
FOLDED = "\n".join(
    [
        f"{DISPATCH};{WORK};send (/src/log_capturer/sinks/kafka/sink.py:200);"
        "encode_chunk (/src/log_capturer/sinks/kafka/encode.py:52) 60",
        f"{DISPATCH};{WORK};send (/src/log_capturer/sinks/kafka/sink.py:210) 20",
        f"{PROC};thread (0x2): kafka_sink-poll;_bootstrap (threading.py:995);"
        "_poll_loop (/src/log_capturer/sinks/kafka/sink.py:300) 20",
    ]
)


def test_summary_by_thread_self_and_inclusive(tmp_path: Path) -> None:
    f = tmp_path / "p.folded"
    f.write_text(FOLDED)
    text = summarize(f)
    assert text.startswith("100 samples")
    by_thread, own, inclusive = text.split("\n\n")[1:4]
    assert "80.0%  thread (0x1): dispatch-0" in by_thread
    assert own.splitlines()[1].strip() == "60.0%  encode_chunk (log_capturer/sinks/kafka/encode.py)"
    # Lines of one function are merged: send is 20 % by itself, 80 % with what it calls.
    assert "20.0%  send (log_capturer/sinks/kafka/sink.py)" in own
    assert "80.0%  send (log_capturer/sinks/kafka/sink.py)" in inclusive


def test_empty_profile(tmp_path: Path) -> None:
    f = tmp_path / "p.folded"
    f.write_text("")
    assert summarize(f) == "no samples\n"


def test_summary_of_a_multi_process_agent_tells_the_processes_apart(tmp_path: Path) -> None:
    f = tmp_path / "p.folded"
    sup = 'process 1:"python -m log_capturer.workers.supervisor --count 2 --settings-fd 4"'
    worker = 'process 5:"python -m log_capturer.workers.worker --index 1 --count 2"'
    f.write_text(
        f"{sup};thread (2): http;a (x.py:1) 3\n"
        f"{sup};{worker};thread (6): dispatch-0;b (log_capturer/y.py:2) 7\n"
    )
    text = summarize(f)
    assert "by process:\n   70.0%  worker 1 (pid 5)\n   30.0%  supervisor (pid 1)\n" in text
    assert "70.0%  thread (6): dispatch-0" in text and "70.0%  b (log_capturer/y.py)" in text
