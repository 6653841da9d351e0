"""The nginx manager's configuration frame and access-log reading (no process: the integration
tests start nginx for real, e.g. tests/integration/sinks/loki/test_throttled.py)."""

from __future__ import annotations

from pathlib import Path

from log_capturer.devtools.nginx_local import LocalNginx


def test_everything_nginx_writes_is_under_its_work_directory(tmp_path: Path) -> None:
    nginx = LocalNginx(tmp_path / "n", "  server { listen 127.0.0.1:1; }", [1])
    conf = nginx.config()
    work = str((tmp_path / "n").resolve())
    assert "daemon off;" in conf
    for directive in ("pid", "error_log", "access_log", "client_body_temp_path", "proxy_temp_path"):
        line = next(x for x in conf.splitlines() if x.strip().startswith(directive + " "))
        assert work in line, line
    assert "server { listen 127.0.0.1:1; }" in conf.split("http {", 1)[1]


def test_statuses_reads_the_access_log_in_order(tmp_path: Path) -> None:
    nginx = LocalNginx(tmp_path, "", [])
    assert nginx.statuses() == []
    nginx.access_log.write_text(
        "204 100.500 0.250 120 POST /x\n429 101.000 0.000 99 POST /x\ngarbage\n204 102.000 1.000 1 POST /x\n"
    )
    assert nginx.statuses() == [204, 429, 204]
    assert nginx.requests() == [
        (204, 100.25, 100.5, "POST"),
        (429, 101.0, 101.0, "POST"),
        (204, 101.0, 102.0, "POST"),
    ]
