"""BENCHMARKS.md's standing: every row reads its committed results, the table and charts come out of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from log_capturer.devtools.bench import standing


@pytest.fixture(scope="module")
def standings() -> list[standing.Standing]:
    return [standing.load(row) for row in standing.ROWS]


def test_every_row_reads_its_results(standings: list[standing.Standing]) -> None:
    for s in standings:
        assert s.runs, s.row.scenario
        assert s.commits and s.date, s.row.scenario
        for run in s.runs:
            assert run.lost == 0 and run.duplicated == 0, s.row.scenario
        if s.row.kind == "many-files":
            assert s.values("idle_cpu_pct") and s.values("p99_ms")
        else:
            assert len(s.values("throughput")) == len(s.runs)
            assert s.values("cpu_us_per_line"), s.row.scenario
        if s.row.ceiling:
            assert len(s.ratios()) == len(s.runs), f"{s.row.scenario}: a run without its ceiling"


def test_the_table_has_a_row_per_scenario_with_its_links(standings: list[standing.Standing]) -> None:
    text = standing.table(standings)
    lines = text.splitlines()
    assert len(lines) == 2 + len(standing.ROWS)
    for row, line in zip(standing.ROWS, lines[2:], strict=True):
        assert line.startswith(f"| {row.scenario} |")
        for run in row.runs:
            assert f"]({run})" in line
            assert (standing.ROOT / run).is_file()
        assert f"]({row.series_link()})" in line


def test_read_run_rejects_an_unknown_kind(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown kind"):
        standing.read_run(path, "other")


def test_commands_are_bench_commands() -> None:
    text = standing.commands(standing.ROWS)
    commands = [line for line in text.splitlines() if line.startswith("log-capturer")]
    assert len(commands) == len(standing.ROWS)
    assert all(line.startswith("log-capturer bench ") for line in commands)


def test_charts_are_drawn(standings: list[standing.Standing], tmp_path: Path) -> None:
    standing.throughput_chart(standings, tmp_path / "t.png")
    standing.latency_chart(standings, tmp_path / "l.png")
    for name in ("t.png", "l.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_benchmarks_md_shows_what_the_results_say(standings: list[standing.Standing]) -> None:
    """The table and the commands of BENCHMARKS.md are the generated ones: a row changed by hand
    or a result moved without regenerating fails here."""
    text = (standing.ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    hint = "regenerate with: python -m log_capturer.devtools.bench.standing (see BENCHMARKS.md)"
    # Whole blocks, between blank lines: not inside another table or code fence.
    assert f"\n\n{standing.table(standings).strip()}\n\n" in text, hint
    assert f"\n\n{standing.commands(standing.ROWS).strip()}\n\n" in text, hint
