"""A thousand users on one kubepie gateway (local backend, as root).

Distinct identities (signed RFC 9068 bearer tokens from a local issuer, each with its own
uid) arrive at a steady rate in waves of ``--at-once`` users; each makes a first request
(which starts their file server: the cold start) and a few more, then goes quiet. Between
waves the gateway's idle timeout stops the quiet servers, so at most ``--at-once`` run at
once. Reported: cold-start latency (first request, p50/p99), warm latency, memory per idle
file server (PSS, the honest share when many run, and RSS) with a full wave running, the
gateway's own RSS and CPU, and what the idle timeout reclaimed.

    sudo python -m benchmarks.thousand_users [--users 1000] [--at-once 200] [--rate 2]
                                            [--requests 3] [--idle 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import httpx

from benchmarks.proc_tree import cpu_seconds, process_memory
from harness.gateway import Gateway, remove
from harness.issuer import Issuer  # discovery + JWKS on loopback, signs tokens

FIRST_UID = 20000


def user_token(issuer: Issuer, index: int, audience: str) -> str:
    """User ``index``'s access token: its own name and uid, valid for the whole run."""
    return issuer.token(aud=audience, sub=f"user-{index}", exp=int(time.time()) + 7200,
                        preferred_username=f"u{index:04d}", uidNumber=FIRST_UID + index,
                        gidNumber=FIRST_UID + index)


@dataclass
class Results:
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pss: list[int] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    running_peak: int = 0
    reclaimed: int = 0


def file_server_pids() -> list[int]:
    """The file servers: the children of the local backend's fork server."""
    parents: dict[int, int] = {}
    forkservers = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(status.split("PPid:")[1].split()[0])
            if b"backends.forkserver" in cmdline:
                forkservers.add(int(entry))
    return [pid for pid, parent in parents.items() if parent in forkservers]


def memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in KiB."""
    rss, pss = process_memory(pid)
    return pss // 1024, rss // 1024


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one_user(client: httpx.AsyncClient, base: str, token: str, requests: int,
                   results: Results) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for number in range(requests):
        started = time.monotonic()
        try:
            response = await client.get(f"{base}/home/hello.txt", headers=headers)
            ok = response.status_code == 200 and response.text == "hello\n"
            if not ok:
                results.errors.append(f"{response.status_code} {response.text[:80]}")
                return
        except httpx.HTTPError as exc:
            results.errors.append(repr(exc))
            return
        (results.cold if number == 0 else results.warm).append(time.monotonic() - started)
        await asyncio.sleep(0.2)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(args: argparse.Namespace, root: Path) -> Results:
    issuer = Issuer()
    await issuer.start()
    gateway = Gateway(SimpleNamespace(issuer=issuer.url), root,  # type: ignore[arg-type]
                      {"KUBEPIE_IDLE_TIMEOUT": f"{args.idle}s", "KUBEPIE_LOG_LEVEL": "warning",
                       "KUBEPIE_START_TIMEOUT": "5m"})
    results = Results()
    gateway.start()
    assert gateway.process is not None
    cpu_before = cpu_seconds([gateway.process.pid])
    limits = httpx.Limits(max_connections=args.at_once + 10)
    try:
        async with httpx.AsyncClient(timeout=300, limits=limits) as client:
            for wave_start in range(0, args.users, args.at_once):
                wave = range(wave_start, min(args.users, wave_start + args.at_once))
                tasks = []
                started = time.monotonic()
                for position, index in enumerate(wave):
                    await asyncio.sleep(max(0.0, started + position / args.rate
                                            - time.monotonic()))
                    token = user_token(issuer, index, gateway.url)
                    tasks.append(asyncio.create_task(
                        one_user(client, gateway.url, token, args.requests, results)))
                await asyncio.gather(*tasks)
                pids = file_server_pids()
                results.running_peak = max(results.running_peak, len(pids))
                for pid in pids:
                    try:
                        pss, rss = memory_kib(pid)
                    except (OSError, KeyError):
                        continue
                    results.pss.append(pss)
                    results.rss.append(rss)
                print(f"users {wave.start}-{wave.stop - 1}: {len(pids)} file servers running, "
                      f"cold p50 {statistics.median(results.cold):.2f} s, "
                      f"gateway RSS {rss_mib(gateway.process.pid):.0f} MiB, "
                      f"errors {len(results.errors)}", flush=True)
                # The idle timeout reclaims this wave before the next arrives.
                deadline = time.monotonic() + args.idle * 3 + 30
                while file_server_pids() and time.monotonic() < deadline:
                    await asyncio.sleep(1)
                results.reclaimed += len(pids) - len(file_server_pids())
        results_gateway = (rss_mib(gateway.process.pid),
                           cpu_seconds([gateway.process.pid]) - cpu_before)
    finally:
        gateway.stop()
        assert issuer.runner is not None
        await issuer.runner.cleanup()
    print_report(args, results, *results_gateway)
    return results


def print_report(args: argparse.Namespace, results: Results, gateway_rss: float,
                 gateway_cpu: float) -> None:
    def stats(values: list[float]) -> str:
        return (f"p50 {statistics.median(values) * 1000:.0f} ms, p99 "
                f"{percentile(values, 0.99) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms")

    print(f"\n{args.users} users, {args.at_once} at once, arriving {args.rate}/s, "
          f"{args.requests} requests each, idle timeout {args.idle} s")
    print(f"| first request (cold start) | {stats(results.cold)} |")
    print(f"| later requests (warm) | {stats(results.warm)} |")
    print(f"| idle file server PSS | median {statistics.median(results.pss) / 1024:.1f} MiB |")
    print(f"| idle file server RSS | median {statistics.median(results.rss) / 1024:.1f} MiB |")
    print(f"| file servers running at once (peak seen) | {results.running_peak} |")
    print(f"| stopped by the idle timeout | {results.reclaimed} |")
    print(f"| gateway RSS after {args.users} identities | {gateway_rss:.0f} MiB |")
    print(f"| gateway CPU | {gateway_cpu:.1f} s ({gateway_cpu / args.users * 1000:.1f} ms "
          f"per user) |")
    print(f"| errors | {len(results.errors)} {results.errors[:3]} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--at-once", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2.0, help="arrivals per second")
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--idle", type=int, default=15, help="idle timeout, seconds")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: file servers run as the users' own uids", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="kubepie-1000-"))
    root.chmod(0o755)
    (root / "data").mkdir(mode=0o1777)
    for index in range(args.users):
        home = root / "home" / f"u{index:04d}"
        home.mkdir(parents=True)
        (home / "hello.txt").write_text("hello\n")
        for path in (home, home / "hello.txt"):
            os.chown(path, FIRST_UID + index, FIRST_UID + index)
        home.chmod(0o700)
    try:
        asyncio.run(run(args, root))
    finally:
        remove(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
