"""The walltime command as a process: settings errors, /healthz, /status, /metrics, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.hub import free_port, python
from harness.tools import wait_http

BASE_ENV = {
    "PATH": os.environ["PATH"],
    "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",
    "JUPYTERHUB_USER": "alice",
    "WALLTIME_API_TOKEN": "t0ken-value-never-logged",
    "WALLTIME_LIMIT": "30m",
}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python(), "-m", "services", "walltime", *args], env=env,
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize(("change", "message"), [
    ({"WALLTIME_LIMIT": "abc"},
     "WALLTIME_LIMIT='abc': not a duration (use e.g. 90s, 30m, 12h, 1d)"),
    ({"WALLTIME_LIMIT": "-1m"}, "WALLTIME_LIMIT='-1m': not a duration"),
    ({"JUPYTERHUB_API_URL": None}, "JUPYTERHUB_API_URL is required"),
    ({"JUPYTERHUB_API_URL": "hub:8081"}, "JUPYTERHUB_API_URL='hub:8081' must be an http(s) URL"),
    ({"JUPYTERHUB_USER": None}, "JUPYTERHUB_USER is required"),
    ({"WALLTIME_API_TOKEN": None}, "WALLTIME_API_TOKEN or WALLTIME_API_TOKEN_FILE is required"),
    ({"WALLTIME_API_TOKEN": None, "WALLTIME_API_TOKEN_FILE": "/nonexistent/token"},
     "WALLTIME_API_TOKEN_FILE='/nonexistent/token': cannot read it: No such file"),
    ({"WALLTIME_API_TOKEN": None, "WALLTIME_API_TOKEN_FILE": "/"},
     "WALLTIME_API_TOKEN_FILE='/': cannot read it: Is a directory"),
    ({"WALLTIME_PORT": "http"}, "WALLTIME_PORT='http': Input should be a valid integer"),
    ({"WALLTIME_WARN": "10m,soon"}, "WALLTIME_WARN='10m,soon': not a duration"),
])
def test_bad_settings_give_one_clear_line_and_exit_2(change: dict, message: str) -> None:
    env = {k: v for k, v in {**BASE_ENV, **change}.items() if v is not None}
    result = run(env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"jupyterhub-sidecars walltime: {message}"), lines[0]
    assert BASE_ENV["WALLTIME_API_TOKEN"] not in result.stderr + result.stdout


def test_flags_override_the_environment_and_are_named_in_errors() -> None:
    result = run(BASE_ENV, "--limit", "later")
    assert result.returncode == 2
    assert result.stderr.strip() == ("jupyterhub-sidecars walltime: --limit='later': "
                                     "not a duration (use e.g. 90s, 30m, 12h, 1d)")


def test_a_secret_in_a_bad_setting_is_not_echoed(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-from-file\n")
    env = {**BASE_ENV, "WALLTIME_API_TOKEN": "", "WALLTIME_API_TOKEN_FILE": str(token_file),
           "WALLTIME_LIMIT": "x"}
    result = run(env)
    assert result.returncode == 2
    assert "s3cret" not in result.stderr


def test_serves_health_and_metrics_while_waiting_and_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    env = {**BASE_ENV, "WALLTIME_PORT": str(port)}  # the hub address is closed: it waits
    process = subprocess.Popen([python(), "-m", "services", "walltime"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        health = wait_http(base + "/healthz", timeout=15)
        assert health.status_code == 200 and health.json() == {"ok": True}
        status = httpx.get(base + "/status", timeout=2)
        assert status.status_code == 503
        assert status.json()["state"] == "starting"
        metrics = httpx.get(base + "/metrics", timeout=2).text
        families = {f.name: f for f in text_string_to_metric_families(metrics)}
        requests = families["jupyterhub_sidecars_hub_requests"]
        assert any(s.labels == {"method": "GET", "outcome": "ConnectError"}
                   for s in requests.samples)
        # No countdown yet: no walltime series rather than a made-up value.
        assert not families["jupyterhub_sidecars_walltime_remaining_seconds"].samples

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert time.monotonic() - started < 6
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read() if process.stdout else ""
    assert "stop signal received" in output
    assert BASE_ENV["WALLTIME_API_TOKEN"] not in output


def test_only_loopback_is_listened_on() -> None:
    port = free_port()
    process = subprocess.Popen([python(), "-m", "services", "walltime"],
                               env={**BASE_ENV, "WALLTIME_PORT": str(port)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=15)
        listening = Path("/proc/net/tcp").read_text()
        local = [line.split()[1] for line in listening.splitlines()[1:]
                 if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port]
        assert local == ["0100007F:" + f"{port:04X}"]
    finally:
        process.terminate()
        process.wait(10)
