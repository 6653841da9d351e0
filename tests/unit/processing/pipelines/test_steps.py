from __future__ import annotations

from tests.unit.processing.pipelines.support import pipeline, run


def test_regex_extract_puts_named_groups_in_fields_and_counts_misses() -> None:
    p = pipeline(
        "    - type: regex_extract\n"
        r"      pattern: '^(?P<ip>\S+) (?P<method>[A-Z]+) (?P<path>\S+)(?: (?P<opt>\d+))?'" + "\n"
    )
    recs = run(p, ["10.0.0.1 GET /a", "garbage", "10.0.0.2 POST /b 7"])
    assert recs[0]["fields"] == {"ip": "10.0.0.1", "method": "GET", "path": "/a"}
    assert recs[1]["fields"] == {} and recs[1]["message"] == "garbage"
    assert recs[2]["fields"]["opt"] == "7"
    assert p.failures == {"0:regex_extract": 1}


def test_regex_extract_into_a_target_object_from_a_field() -> None:
    p = pipeline(
        "    - type: json_parse\n"
        "    - type: regex_extract\n"
        "      field: ua\n"
        "      target: browser\n"
        r"      pattern: '(?P<name>Firefox|Chrome)/(?P<version>[\d.]+)'" + "\n"
    )
    recs = run(p, ['{"ua": "Mozilla/5.0 Firefox/120.0"}'])
    assert recs[0]["fields"]["browser"] == {"name": "Firefox", "version": "120.0"}


def test_json_parse_merges_members_and_leaves_bad_lines_alone() -> None:
    p = pipeline("    - type: json_parse\n")
    recs = run(p, ['{"user": "ann", "n": 3, "tenant_id": "t9"}', "{not json", "[1, 2]", '"str"'])
    assert recs[0]["fields"] == {"user": "ann", "n": 3, "tenant_id": "t9"}
    assert [r["fields"] for r in recs[1:]] == [{}, {}, {}]
    assert [r["message"] for r in recs[1:]] == ["{not json", "[1, 2]", '"str"']
    assert p.failures == {"0:json_parse": 3}


def test_json_parse_target_and_a_field_holding_json() -> None:
    p = pipeline(
        "    - type: regex_extract\n"
        "      pattern: 'payload=(?P<payload>\\{.*\\})'\n"
        "    - type: json_parse\n"
        "      field: payload\n"
        "      target: body\n"
        "    - type: field_remove\n"
        "      fields: [payload]\n"
    )
    recs = run(p, ['event payload={"a": {"b": 1}}'])
    assert recs[0]["fields"] == {"body": {"a": {"b": 1}}}


def test_logfmt_parse_handles_quotes_and_escapes() -> None:
    p = pipeline("    - type: logfmt_parse\n")
    recs = run(p, ['level=warn msg="disk \\"sda\\" slow" took=12ms empty=', "no pairs here"])
    assert recs[0]["fields"] == {"level": "warn", "msg": 'disk "sda" slow', "took": "12ms", "empty": ""}
    assert recs[0]["level"] == "warn"
    assert recs[1]["fields"] == {}
    assert p.failures == {"0:logfmt_parse": 1}


def test_timestamp_parse_sets_the_record_time() -> None:
    p = pipeline(
        "    - type: regex_extract\n"
        "      pattern: '^(?P<time>\\S+ \\S+)'\n"
        "    - type: timestamp_parse\n"
        "      field: time\n"
        "      formats: ['%Y-%m-%d %H:%M:%S,%f', rfc3339]\n"
        "      timezone: Europe/Paris\n"
    )
    recs = run(p, ["2026-11-25 10:00:00,250 started", "2026-11-25 07:00:00Z ready", "when? never"])
    assert recs[0]["timestamp"] == "2026-11-25T09:00:00.250000000Z"
    assert recs[1]["timestamp"] == "2026-11-25T07:00:00.000000000Z"
    assert recs[2]["timestamp"] == "2026-11-25T08:00:00.000000000Z"  # the read time
    assert p.failures == {"1:timestamp_parse": 1}


def test_timestamp_parse_epoch_milliseconds_from_json() -> None:
    p = pipeline(
        "    - type: json_parse\n    - type: timestamp_parse\n      field: ts\n      formats: [unix_ms]\n"
    )
    recs = run(p, ['{"ts": 1795593600123}'])
    assert recs[0]["timestamp"] == "2026-11-25T08:00:00.123000000Z"


def test_field_add_renders_templates_and_respects_overwrite() -> None:
    p = pipeline(
        "    - type: logfmt_parse\n"
        "    - type: field_add\n"
        "      fields:\n"
        "        route: '{{method}} {{path}}'\n"
        "        origin: '{{source_type}}:{{source_id}}'\n"
        "        env: prod\n"
        "        weight: 3\n"
        "    - type: field_add\n"
        "      overwrite: false\n"
        "      fields: {env: staging, team: core}\n"
    )
    recs = run(p, ["method=GET path=/x"])
    assert recs[0]["fields"] == {
        "method": "GET",
        "path": "/x",
        "route": "GET /x",
        "origin": "file:/var/log/app.log",
        "env": "prod",
        "weight": 3,
        "team": "core",
    }


def test_field_add_with_a_missing_field_changes_nothing_and_counts() -> None:
    p = pipeline("    - type: field_add\n      fields: {a: x, b: '{{nope}}'}\n")
    recs = run(p, ["line"])
    assert recs[0]["fields"] == {}
    assert p.failures == {"0:field_add": 1}


def test_field_add_can_replace_the_message_and_nest() -> None:
    p = pipeline(
        "    - type: json_parse\n"
        "    - type: field_add\n"
        "      fields: {message: '{{msg}}', http.status: '{{code}}', level_copy: '{{level}}'}\n"
    )
    recs = run(p, ['{"msg": "user login", "code": 200, "level": "info"}'])
    assert recs[0]["message"] == "user login"
    assert recs[0]["fields"]["http"] == {"status": "200"}
    assert recs[0]["fields"]["level_copy"] == "info"


def test_field_remove_nested_and_missing() -> None:
    p = pipeline("    - type: json_parse\n    - type: field_remove\n      fields: [a.b, c, zzz]\n")
    recs = run(p, ['{"a": {"b": 1, "keep": 2}, "c": 3, "d": 4}'])
    assert recs[0]["fields"] == {"a": {"keep": 2}, "d": 4}
    assert p.failures == {}


def test_log_level_extract_with_mapping_and_numbers() -> None:
    p = pipeline(
        "    - type: json_parse\n"
        "    - type: log_level_extract\n"
        "      field: sev\n"
        "      mapping: {E: error, '5': debug}\n"
    )
    recs = run(p, ['{"sev": "E"}', '{"sev": 5}', '{"sev": "WARNING"}', '{"sev": 50}', '{"sev": "??"} ERROR'])
    assert [r["level"] for r in recs] == ["error", "debug", "warn", "error", "error"]
    assert p.failures == {"0:json_parse": 1, "1:log_level_extract": 1}


def test_level_from_the_pipeline_wins_over_detection() -> None:
    p = pipeline(
        "    - type: regex_extract\n"
        "      pattern: '^\\[(?P<lvl>\\w)\\]'\n"
        "    - type: log_level_extract\n"
        "      field: lvl\n"
        "      mapping: {D: debug}\n"
    )
    recs = run(p, ["[D] ERROR text that would be detected as error", "INFO no bracket"])
    assert [r["level"] for r in recs] == ["debug", "info"]


def test_key_field_comes_from_pipeline_fields() -> None:
    p = pipeline("    - type: regex_extract\n      pattern: 'tenant (?P<tenant_id>\\w+)'\n")
    recs = run(p, ["request from tenant acme"])
    assert recs[0]["fields"]["tenant_id"] == "acme"


def test_source_meta_fields_reach_the_pipeline() -> None:
    p = pipeline("    - type: field_add\n      fields: {where: '{{hostname}}'}\n")
    recs = run(p, ["x"], meta=[{"hostname": "web1"}])
    assert recs[0]["fields"] == {"hostname": "web1", "where": "web1"}


def test_read_time_is_kept_when_no_step_sets_a_time() -> None:
    p = pipeline("    - type: field_add\n      fields: {a: b}\n")
    recs = run(p, ["x"])
    assert recs[0]["timestamp"] == "2026-11-25T08:00:00.000000000Z"


def test_json_parse_reads_a_line_with_invalid_bytes_or_a_lone_surrogate() -> None:
    """An invalid byte decoded as ``\\xNN`` (backslashreplace) is not a JSON escape: the member
    keeps the four characters; a lone surrogate escape reads as U+FFFD."""
    p = pipeline("    - type: json_parse\n")
    raw = b'{"user": "ann\xff", "msg": "\\ud800", "tenant_id": "t9"}'
    recs = run(p, [raw.decode("utf-8", "backslashreplace"), raw.decode("utf-8", "replace")])
    assert recs[0]["fields"] == {"user": "ann\\xff", "msg": "\ufffd", "tenant_id": "t9"}
    assert recs[1]["fields"] == {"user": "ann\ufffd", "msg": "\ufffd", "tenant_id": "t9"}
    assert p.failures == {}
