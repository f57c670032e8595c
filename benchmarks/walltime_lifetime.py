"""What one server's walltime costs the hub, and how exactly it is kept.

Starts a real JupyterHub (as the tests do), starts N servers one after another with a 60 s
walltime, and reports, from the hub's own access log and the sidecars' logs:
  - hub API requests per server lifetime made with the walltime token,
  - when the sidecar asked for the stop, relative to the deadline,
  - when the hub had the server stopped, relative to the deadline,
and, for comparison, the requests jupyterhub-idle-culler makes for 100 users over an hour
(computed from its polling: GET / and a paginated GET /users?state=ready every interval).

    .venv/bin/python -m benchmarks.walltime_lifetime [--servers 10]
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from harness.hub import Hub

LIMIT = 60


def started_at(model: dict) -> float:
    return datetime.fromisoformat(model["started"].replace("Z", "+00:00")).timestamp()


def run(servers: int) -> None:
    hub = Hub(Path(tempfile.mkdtemp(prefix="walltime-bench-")))
    hub.start()
    try:
        users = [f"bench-{i}" for i in range(servers)]
        # One after another: jupyter_server takes seconds of CPU to start on 2 cores.
        models = {user: hub.start_server(user, profile="minute") for user in users}
        with ThreadPoolExecutor(servers) as pool:
            gone = dict(zip(users, pool.map(lambda u: hub.wait_stopped(u, timeout=90), users),
                            strict=True))
        time.sleep(1)
        log = hub.log_path.read_text(errors="replace")
        asked, requests = [], []
        for user in users:
            deadline = started_at(models[user]) + LIMIT
            [record] = hub.log_records(message="walltime reached, stopping the server",
                                       user=user)
            asked.append(datetime.fromisoformat(record["time"]).timestamp() - deadline)
            # JupyterHub's access log: "200 GET /hub/api/users/bench-3/server (bench-3@...)".
            # The notebook's own requests (activity) go to other paths.
            name = re.escape(user)
            requests.append(len(re.findall(
                rf"(?:GET|DELETE) /hub/api/users/{name}/servers?\S* \({name}@", log)))
        stop_done = [gone[u] - started_at(models[u]) - LIMIT for u in users]
    finally:
        hub.stop()

    print(f"servers: {servers}, walltime {LIMIT} s, one machine ({hub.state_dir})")
    print(f"hub requests per server lifetime (hub access log): {sorted(set(requests))}")
    print(f"stop asked, s after the deadline: median {statistics.median(asked):.3f}, "
          f"max {max(asked):.3f}")
    print(f"server gone, s after the deadline: median {statistics.median(stop_done):.2f}, "
          f"max {max(stop_done):.2f} (includes jupyter_server's own shutdown)")

    users, interval, page = 100, 600, 50  # Z2JH cull.every default; hub's default page size
    per_interval = 1 + math.ceil(users / page)
    print(f"idle-culler, {users} users, 1 h, every {interval} s, page size {page}: "
          f"{per_interval} requests per interval = {per_interval * 3600 // interval} per hour, "
          f"each listing all {users} users; a max-age stop lands up to {interval} s late")
    print(f"walltime sidecars, {users} users, 1 h sessions: 2 per server = {2 * users} per hour "
          f"(1 read at start + 1 stop), each on one server; stops land "
          f"{statistics.median(asked):.2f} s after the deadline")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=10)
    run(parser.parse_args().servers)
