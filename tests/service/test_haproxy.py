"""service.haproxy: Ray's generated HAProxy configuration, rewritten before HAProxy reads it.

The launcher's HAProxy path is exercised end to end by test_main (requests, errors) and by the
fault scenarios in loadtest.faults (a replica killed mid-request); these tests pin the rewrite
itself and the lines of Ray's template it depends on, so a Ray upgrade that moves them fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service import haproxy

# The parts of Ray 2.60's rendered configuration that the rewrite touches.
GENERATED = """\
global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 3600s
    errorfile 502 /tmp/haproxy-serve/n1/500.http
    errorfile 503 /tmp/haproxy-serve/n1/500.http
    errorfile 504 /tmp/haproxy-serve/n1/500.http
frontend prometheus
    bind :9101
    mode http
frontend http_frontend
    bind 127.0.0.1:8000
listen stats
  bind *:8404
  stats enable
"""


def test_ray_template_still_has_the_lines_we_rewrite() -> None:
    from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE as template

    assert "frontend http_frontend\n    bind {{ config.frontend_host }}:" in template
    assert "bind :{{ config.metrics_port }}" in template
    assert "bind *:{{ config.stats_port }}" in template
    for code in (502, 503, 504):
        assert f"errorfile {code} {{{{ config.error_file_path }}}}" in template


def test_side_listeners_bind_the_service_host_and_errors_are_ours(tmp_path: Path) -> None:
    files = {code: tmp_path / f"{code}.http" for code in (502, 503, 504)}
    config = haproxy.rewrite(GENERATED, files)
    binds = [line.split()[1] for line in config.splitlines() if line.strip().startswith("bind")]
    assert binds == ["127.0.0.1:9101", "127.0.0.1:8000", "127.0.0.1:8404"]
    for code, path in files.items():
        assert f"errorfile {code} {path}\n" in config
    assert "500.http" not in config
    assert f"timeout http-request {haproxy.HTTP_REQUEST_TIMEOUT_S}s" in config
    # Rewriting twice changes nothing (HAProxy is restarted with the same file on reloads).
    assert haproxy.rewrite(config, files) == config


def test_an_all_interfaces_service_keeps_all_interfaces_everywhere(tmp_path: Path) -> None:
    files = {code: tmp_path / f"{code}.http" for code in (502, 503, 504)}
    generated = GENERATED.replace("bind 127.0.0.1:8000", "bind 0.0.0.0:8000")
    binds = [
        line.split()[1]
        for line in haproxy.rewrite(generated, files).splitlines()
        if line.strip().startswith("bind")
    ]
    assert binds == ["0.0.0.0:9101", "0.0.0.0:8000", "0.0.0.0:8404"]


def test_a_configuration_without_the_api_frontend_is_refused() -> None:
    with pytest.raises(ValueError, match="http_frontend"):
        haproxy.rewrite("global\n    maxconn 1\n", {})


@pytest.mark.parametrize(("code", "status"), [(502, 503), (503, 503), (504, 504)])
def test_error_files_are_whole_json_responses(tmp_path: Path, code: int, status: int) -> None:
    script = haproxy.install(tmp_path, "/bin/true")
    assert script.stat().st_mode & 0o111
    head, _, body = (tmp_path / f"{code}.http").read_bytes().partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert lines[0].startswith(f"HTTP/1.1 {status} ")
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    assert ("Retry-After" in headers) == (status == 503)
    error = json.loads(body)["error"]
    assert error["message"] and error["code"]


def test_the_script_rewrites_the_file_then_runs_the_real_binary_with_rays_arguments(
    tmp_path: Path,
) -> None:
    import subprocess

    config = tmp_path / "haproxy.cfg"
    config.write_text(GENERATED)
    script = haproxy.install(tmp_path / "bin", "/bin/echo")  # echo stands in for HAProxy
    args = ["-db", "-f", str(config), "-sf", "123"]
    done = subprocess.run([str(script), *args], capture_output=True, text=True, check=True)
    assert done.stdout.split() == args  # Ray finds its HAProxy by this command line
    assert "bind 127.0.0.1:8404" in config.read_text()
