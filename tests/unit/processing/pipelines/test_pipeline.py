from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from log_capturer.observability.metrics import Metrics
from log_capturer.processing import Analyzer
from log_capturer.processing.pipelines import PipelineError, load_pipelines, parse_pipelines
from log_capturer.record import Chunk, Origin
from tests.unit.processing.pipelines.support import pipeline, run


def problems(text: str) -> list[str]:
    with pytest.raises(PipelineError) as exc:
        parse_pipelines(yaml.safe_load(text))
    return exc.value.problems


def test_errors_name_the_pipeline_step_and_key() -> None:
    found = problems(
        "pipelines:\n"
        "  web:\n"
        "    - type: regex_extract\n"
        "      pattern: '(unclosed'\n"
        "    - type: regex_extract\n"
        "      pattern: 'no groups'\n"
        "    - type: timestamp_parse\n"
        "      formats: [iso]\n"
        "      timezone: Mars/Olympus\n"
        "    - type: json_parse\n"
        "      feild: x\n"
        "    - type: lowercase\n"
        "    - {pattern: x}\n"
        "    - type: field_remove\n"
        "      fields: [message]\n"
        "    - type: log_level_extract\n"
        "      mapping: {X: loud}\n"
    )
    text = "\n".join(found)
    assert "web[0].pattern: invalid regular expression" in text
    assert "web[1].pattern: the pattern has no named group" in text
    assert "web[2].formats: format 'iso' is neither a strptime pattern" in text
    assert "web[2].timezone: unknown time zone 'Mars/Olympus'" in text
    assert "web[3].feild: unknown key" in text
    assert "web[4]: unknown step type" in text
    assert "web[5]: each step needs a 'type'" in text
    assert "web[6].fields: 'message' cannot be removed" in text
    assert "web[7].mapping: mapping 'X' -> 'loud'" in text


def test_an_unknown_key_gets_a_did_you_mean() -> None:
    found = problems(
        "pipelines:\n"
        "  web:\n"
        "    - type: regex_extract\n"
        "      patern: '(?P<a>.)'\n"
        "    - type: redact\n"
        "      patterns: [{nme: card, regex: '\\d{16}'}]\n"
    )
    assert (
        "pipelines.web[0].patern: unknown key. Did you mean 'pipelines.web[0].pattern'? "
        "Allowed here: field, pattern, target, type"
    ) in found
    assert any(p.startswith("pipelines.web[1].patterns[0].nme: unknown key. Did you mean") for p in found)


def test_a_type_error_says_what_shape_is_expected() -> None:
    found = problems("pipelines:\n  web: {type: json_parse}\n")
    assert found == ['pipelines.web: expected a list, such as `web: [{type: regex_extract, pattern: "..."}]`']
    found = problems("pipelines:\n  web:\n    - {type: timestamp_parse, formats: rfc3339}\n")
    assert found == [
        "pipelines.web[0].formats: expected a list, such as `formats: [rfc3339]` (got 'rfc3339')"
    ]


def test_a_file_needs_pipelines() -> None:
    assert problems("pipelines: {}\n")
    assert problems("other: 1\n")


def test_load_pipelines_reports_missing_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="cannot read"):
        load_pipelines(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipelines: [\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_pipelines(bad)
    bad.write_bytes(b"pipelines:\n  web:\n    - type: redact\n      replacement: \xa7\n")
    with pytest.raises(PipelineError) as exc:
        load_pipelines(bad)
    assert exc.value.problems == ["not UTF-8: byte 0xa7 at byte offset 56 (line 4); save the file as UTF-8"]


def test_the_example_pipelines_file_loads(repo_root: Path) -> None:
    pipelines = load_pipelines(repo_root / "configs" / "pipelines.yaml")
    assert {"app-logfmt", "json-app", "nginx-access", "redact-only", "syslog"} <= set(pipelines)


def test_chunks_without_a_pipeline_stay_on_the_fast_path() -> None:
    p = pipeline("    - type: field_add\n      fields: {a: b}\n")
    analyzer = Analyzer("tenant_id", {"p": p}, {"docker": "p"})
    plain = Chunk(Origin("file", "/x"), ["ERROR boom tenant_id=t1"])
    analyzer.analyze(plain)
    assert plain.meta is None and plain.preset_levels is None and plain.timestamps is None
    assert plain.levels == ["error"] and plain.keys == ["t1"]
    by_type = Chunk(Origin("docker", "c1"), ["x"])
    analyzer.analyze(by_type)
    assert by_type.meta == [{"a": "b"}]


def test_a_source_pipeline_wins_over_the_source_type_rule() -> None:
    first = pipeline("    - type: field_add\n      fields: {which: first}\n")
    second = parse_pipelines(
        yaml.safe_load("pipelines:\n  q:\n    - type: field_add\n      fields: {which: second}\n")
    )["q"]
    analyzer = Analyzer(None, {"p": first, "q": second}, {"file": "q"})
    chunk = Chunk(Origin("file", "/x", pipeline="p"), ["x"])
    analyzer.analyze(chunk)
    assert chunk.meta == [{"which": "first"}]


def test_metrics_are_counted_once_per_chunk() -> None:
    metrics = Metrics()
    p = parse_pipelines(
        yaml.safe_load("pipelines:\n  m:\n    - type: json_parse\n    - type: redact\n"), metrics
    )["m"]
    run(p, ['{"a": 1}', "password=x", "nope"])
    reg = metrics.registry
    assert reg.get_sample_value("pipeline_lines_total", {"pipeline": "m"}) == 3
    failures = {"pipeline": "m", "step": "0:json_parse"}
    assert reg.get_sample_value("pipeline_step_failures_total", failures) == 2
    assert reg.get_sample_value("pipeline_redactions_total", {"pipeline": "m", "rule": "password"}) == 1


def test_a_step_that_raises_does_not_stop_the_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    p = pipeline("    - type: field_add\n      fields: {a: b}\n    - type: redact\n")

    def boom(*_: object) -> int:
        raise RuntimeError("defect")

    monkeypatch.setattr(p.steps[0], "run", boom)
    recs = run(p, ["password=x"])
    assert recs[0]["message"] == "password=[REDACTED]"
    assert p.failures == {"0:field_add": 1}
