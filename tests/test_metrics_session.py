"""Usage as the user sees it, against a real JupyterHub with real servers on this machine.

The server extension is not enabled by any flag here: the package's jupyter_server config
file (installed with it) enables it, as in a notebook image.
"""

from __future__ import annotations

import os
import statistics
import time

import httpx
import pytest

from harness.hub import Hub, process_env, server_pid, status_url, user_token
from services.metrics.local_source import LocalSource
from services.metrics.procs import descendants, process_table

pytestmark = pytest.mark.slow

GB3 = 3 * 1024**3  # the "long" test profile's kubespawner_override mem_limit "3G"


def test_status_api_reports_the_servers_usage_limits_and_walltime(hub: Hub) -> None:
    user = "usage-alice"
    model = hub.start_server(user, profile="long")
    token = user_token(hub, user)
    response = httpx.get(status_url(hub, user), headers={"Authorization": f"token {token}"},
                         timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["Cache-Control"] == "no-store"
    memory, cpu, walltime = body["memory"], body["cpu"], body["walltime"]
    assert memory["source"] == "process-tree" and memory["limit_source"] == "declared"
    assert memory["limit_bytes"] == GB3
    tree = descendants(process_table(), server_pid(hub, user))
    rss = sum(p.rss_bytes for p in tree)
    assert memory["used_bytes"] > 20 * 10**6
    assert abs(memory["used_bytes"] - rss) / rss < 0.10, (memory, rss)
    assert cpu["limit"] == 1.5 and cpu["usage_seconds"] > 0
    assert body["gpu"] is None  # no GPU on this machine: absent, not an error
    assert walltime["limit"] == 12 * 3600 and walltime["state"] == "running"
    assert walltime["started"].startswith(model["started"][:19])
    assert 0 < 12 * 3600 - walltime["remaining"] < 120
    # The home folder against the profile's disk_limit: counted in the background, so the
    # first reading may still say "scanning" (services/metrics/disk.py).
    disk = body["disk"]
    assert disk["limit_bytes"] == 2 * 1024**3 and disk["state"] in ("scanning", "ready")
    assert disk["path"] == os.path.realpath(process_env(server_pid(hub, user))["HOME"])

    # What the README tells users to try in a terminal of their session.
    env = process_env(server_pid(hub, user))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "NUMEXPR_MAX_THREADS", "NUMBA_NUM_THREADS"):
        assert env[name] == "2", name  # the profile's 1.5 CPUs, rounded up
    own = httpx.get(env["JUPYTERHUB_SERVICE_URL"].rstrip("/") + "/api/sidecars/status",
                    headers={"Authorization": f"token {env['JUPYTERHUB_API_TOKEN']}"},
                    timeout=30)
    assert own.status_code == 200 and own.json()["memory"]["limit_bytes"] == GB3

    # What the status bar costs: poll as it does and time it (reported, not asserted).
    timings = []
    for _ in range(10):
        started = time.perf_counter()
        httpx.get(status_url(hub, user), headers={"Authorization": f"token {token}"},
                  timeout=30).raise_for_status()
        timings.append(time.perf_counter() - started)
        time.sleep(1.05)  # past the shared one-second cache
    print(f"status API median {statistics.median(timings) * 1000:.1f} ms")


def test_status_api_needs_the_users_own_credentials(hub: Hub) -> None:
    hub.start_server("usage-bob", profile="long")
    hub.api("POST", "/users/usage-mallory")
    url = status_url(hub, "usage-bob")
    assert httpx.get(url, timeout=30).status_code in (302, 403)
    mallory = user_token(hub, "usage-mallory")
    response = httpx.get(url, headers={"Authorization": f"token {mallory}"}, timeout=30)
    assert response.status_code == 403, response.text
    assert "memory" not in response.text


def test_local_agent_finds_each_server_with_its_labels_and_walltime(hub: Hub) -> None:
    hub.start_server("usage-carol", profile="long")
    hub.start_server("usage-carol", "second", profile="minute")
    source = LocalSource()
    try:
        usage = source.read()
    finally:
        source.close()
    mine = {(c.server.user, c.server.server): c for c in usage.containers
            if c.server.user == "usage-carol"}
    assert set(mine) == {("usage-carol", ""), ("usage-carol", "second")}
    default = mine[("usage-carol", "")]
    assert default.server.profile == "long" and mine[("usage-carol", "second")].server.profile \
        == "minute"
    assert default.stats.memory_limit_bytes == GB3 and default.stats.cpu_limit == 1.5
    rss = sum(p.rss_bytes for p in descendants(process_table(), server_pid(hub, "usage-carol")))
    # The cgroup also counts the page cache its processes brought in (tens of MiB at start,
    # more on a loaded machine): at least ~the processes' RSS, and not much more.
    assert 0.9 * rss <= default.stats.memory_usage_bytes <= rss + 64 * 2**20, \
        (default.stats.memory_usage_bytes, rss)
    walltimes = {w.server.server: w for w in usage.walltimes if w.server.user == "usage-carol"}
    assert walltimes["second"].limit_seconds == 60
    assert 0 < walltimes["second"].remaining_seconds <= 60
    assert walltimes[""].limit_seconds == 12 * 3600
