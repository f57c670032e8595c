"""What the kubepie gateway costs: the same file server reached directly, through the
gateway's own Python proxy, and through nginx asking the gateway (auth_request mode,
deploy/kubepie/nginx/kubepie.conf) — the provider's bearer token on every request (checked
at its userinfo once, then remembered as a JWT's claims are) — side by side in
one run, interleaved rounds.

Measured (medians): GET and PUT of a 1 GiB file with curl (MB/s), 4 KiB GETs with wrk
(32 connections, req/s); overhead = 1 - through gateway / direct. For the 4 KiB GETs also
the CPU time each process spent per request (µs: wrk, nginx, the gateway, the file server),
read from /proc around each wrk run: where a path's time goes, and what it needs on how
many cores.

    python -m benchmarks.gateway_overhead [--repeat 5] [--size-mib 1024] [--wrk-seconds 8]

Needs curl, wrk, nginx-light (Debian) and the test extras (oidc-provider-mock). Run as root
it serves as uid 1001, like a user's server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.proc_tree import cpu_used, descendants
from benchmarks.webdav_peers import curl
from harness.fileserver import Fileserver
from harness.gateway import Gateway, access_token
from harness.nginx_front import NginxFront
from harness.oidc import OidcProvider

UID = 1001


def wrk(url: str, seconds: int, header: str) -> float:
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "-H", header, url],
                         capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        print(f"    wrk errors: {out}", file=sys.stderr)
    return next(float(line.split()[1]) for line in out.splitlines()
                if line.startswith("Requests/sec:"))


def wrk_cpu(url: str, seconds: int, header: str,
            processes: dict[str, list[int]]) -> tuple[float, dict[str, float]]:
    """wrk's rate, and the CPU µs per request of each group of processes and of wrk."""
    started = time.monotonic()
    with cpu_used(processes) as used:
        rate = wrk(url, seconds, header)
    elapsed = time.monotonic() - started
    requests = rate * seconds
    cost = {("wrk" if name == "children" else name): value / requests * 1e6
            for name, value in used.items()}
    cost["cores"] = sum(used.values()) / elapsed
    return rate, cost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--wrk-seconds", type=int, default=8)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kubepie-bench-"))
    root.chmod(0o755)
    home = root / "home" / "alice"
    home.mkdir(parents=True)
    with (home / "big.bin").open("wb") as out:
        block = os.urandom(1 << 20)
        for _ in range(args.size_mib):
            out.write(block)
    (home / "small.bin").write_bytes(os.urandom(4096))
    if os.geteuid() == 0:
        for path in (home, *home.iterdir()):
            os.chown(path, UID, UID)
    provider = OidcProvider(root / "provider.log", token_max_age=3600)
    provider.start()
    gateway = Gateway(provider, root, {"KUBEPIE_LOG_LEVEL": "warning",
                                       "KUBEPIE_OPAQUE_TOKENS": "userinfo"})
    direct = Fileserver({"home": home}, give_folders=False,
                        extra_env={"FILESERVER_UID": str(UID), "FILESERVER_GID": str(UID)}
                        if os.geteuid() == 0 else {})
    nginx = NginxFront(root, gateway.port)
    results: dict[str, dict[str, list[float]]] = {
        name: {"get": [], "put": [], "small": []}
        for name in ("direct", "gateway", "nginx+auth_request")}
    costs: dict[str, list[dict[str, float]]] = {name: [] for name in results}
    try:
        gateway.start()
        direct.start()
        nginx.start()
        auth = f"Authorization: Bearer {access_token(provider, 'alice')}"
        curl("-H", auth, f"{gateway.url}/home/small.bin")  # starts alice's server
        bases = {"direct": direct.url, "gateway": gateway.url,
                 "nginx+auth_request": nginx.url}
        assert gateway.process and direct.process and nginx.process
        processes = {  # the gateway's file server is alice's, below its fork server
            "nginx": descendants(nginx.process.pid), "gateway": [gateway.process.pid],
            "file server": [p for p in descendants(gateway.process.pid)
                            if p != gateway.process.pid] + descendants(direct.process.pid)}
        for round_ in range(args.repeat):
            for name, base in bases.items():
                results[name]["get"].append(curl("-H", auth, f"{base}/home/big.bin")
                                            ["speed_download"] / 1e6)
                results[name]["put"].append(curl("-H", auth, "-T", str(home / "big.bin"),
                                                 f"{base}/home/up-{name}.bin")
                                            ["speed_upload"] / 1e6)
                rate, cost = wrk_cpu(f"{base}/home/small.bin", args.wrk_seconds, auth,
                                     processes)
                results[name]["small"].append(rate)
                costs[name].append(cost)
            print(f"round {round_ + 1}/{args.repeat}: " + ", ".join(
                f"{n} GET {r['get'][-1]:.0f} PUT {r['put'][-1]:.0f} 4KiB {r['small'][-1]:.0f}"
                for n, r in results.items()), flush=True)
    finally:
        nginx.stop()
        direct.stop()
        gateway.stop()
        provider.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)
    print("\n| path | GET 1 GiB MB/s | PUT 1 GiB MB/s | 4 KiB GET req/s |")
    print("|---|---:|---:|---:|")
    medians = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    for name, values in medians.items():
        print(f"| {name} | {values['get']:.0f} | {values['put']:.0f} | {values['small']:.0f} |")
    for name in ("gateway", "nginx+auth_request"):
        loss = {k: 1 - medians[name][k] / medians["direct"][k] for k in ("get", "put", "small")}
        print(f"| loss via {name} | {loss['get']:.0%} | {loss['put']:.0%} | "
              f"{loss['small']:.0%} |")
    parts = ("wrk", "nginx", "gateway", "file server")
    print("\nCPU per 4 KiB GET, µs (medians):\n")
    print(f"| path | {' | '.join(parts)} | all | cores busy |")
    print("|---|" + "---:|" * (len(parts) + 2))
    for name, runs in costs.items():
        median = {k: statistics.median(run[k] for run in runs) for k in (*parts, "cores")}
        print(f"| {name} | " + " | ".join(f"{median[k]:.0f}" for k in parts)
              + f" | {sum(median[k] for k in parts):.0f} | {median['cores']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
