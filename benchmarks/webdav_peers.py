"""The kubepie file server against the WebDAV servers people run today, side by side.

One run, loopback, the same files on the same disk for every server, all servers started
at once and measured in rounds that visit each in turn:

  kubepie   jupyterhub-sidecars kubepie fileserver (aiohttp; as nobody when run as root)
  kubepie2  the same with FILESERVER_PROCESSES=2 (two processes on the port, shared locks)
  nginx     nginx with the dav and dav_ext modules (static GET by nginx itself, sendfile on)
  apache    Apache 2.4 mod_dav + mod_dav_fs, mpm_event
  wsgidav   WsgiDAV on cheroot (the usual Python WebDAV server)
  rclone    rclone serve webdav

Measured per server (medians): GET of a 1 GiB file and PUT of a 1 GiB file with curl (MB/s),
PROPFIND Depth 1 of a folder of 10,000 files with curl (s), 4 KiB GETs with 32 connections
with wrk (req/s) and the CPU time the server (all its processes) and wrk spent per request
(µs), and the server's resident memory (all its processes) at the end.

Needs (Debian): nginx-light libnginx-mod-http-dav-ext apache2 rclone wrk curl; (PyPI) wsgidav
cheroot — `pip install -e '.[bench]'`.

    .venv/bin/python -m benchmarks.webdav_peers [--size-mib 1024] [--repeat 3] \
        [--only kubepie,nginx]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.proc_tree import cpu_used, descendants, tree_memory

VENV_BIN = Path(sys.executable).parent
NOBODY = 65534
APACHE_MODULES = "/usr/lib/apache2/modules"
NGINX_DAV_EXT = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Command:
    argv: list[str]
    env: dict[str, str] | None = None


@dataclass
class Server:
    name: str
    command: Callable[[Path, Path, int], Command]  # (data, scratch, port)
    prefix: str = ""  # URL path of the data folder


def start_kubepie(data: Path, scratch: Path, port: int, processes: int = 1) -> Command:
    env = {**os.environ, "FILESERVER_MOUNTS": f"files={data}", "FILESERVER_PORT": str(port),
           "FILESERVER_LOG_LEVEL": "warning", "FILESERVER_PROCESSES": str(processes)}
    if os.geteuid() == 0:
        env.update(FILESERVER_UID=str(NOBODY), FILESERVER_GID=str(NOBODY))
    return Command([str(VENV_BIN / "jupyterhub-sidecars"), "kubepie", "fileserver"], env)


def start_nginx(data: Path, scratch: Path, port: int) -> Command:
    conf = scratch / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(f"""
load_module {NGINX_DAV_EXT};
{user}
worker_processes auto;
pid {scratch}/nginx.pid;
error_log {scratch}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on;
  client_body_temp_path {data}/.nginx-tmp;
  server {{
    listen 127.0.0.1:{port};
    location /files/ {{
      alias {data}/;
      dav_methods PUT DELETE MKCOL COPY MOVE;
      dav_ext_methods PROPFIND OPTIONS;
      create_full_put_path on;
      client_max_body_size 0;
      autoindex on;
    }}
  }}
}}
""")
    return Command(["nginx", "-c", str(conf), "-g", "daemon off;"])


def start_apache(data: Path, scratch: Path, port: int) -> Command:
    conf = scratch / "apache.conf"
    run_as = "User www-data\nGroup www-data" if os.geteuid() == 0 else ""
    modules = "\n".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in
                        ("mpm_event", "authz_core", "alias", "dav", "dav_fs", "mime", "dir"))
    conf.write_text(f"""
ServerRoot {scratch}
{modules}
{run_as}
Listen 127.0.0.1:{port}
ServerName localhost
PidFile {scratch}/apache.pid
ErrorLog {scratch}/apache-error.log
DavLockDB {scratch}/davlock
TypesConfig /etc/mime.types
EnableSendfile On
Alias /files {data}
<Directory {data}>
  Dav On
  Require all granted
</Directory>
""")
    return Command(["apache2", "-f", str(conf), "-DFOREGROUND"])


def start_wsgidav(data: Path, scratch: Path, port: int) -> Command:
    return Command([str(VENV_BIN / "wsgidav"), "--host", "127.0.0.1", "--port", str(port),
                    "--root", str(data), "--auth", "anonymous", "--server", "cheroot",
                    "--no-config", "-q", "-q"])


def start_rclone(data: Path, scratch: Path, port: int) -> Command:
    return Command(["rclone", "--config", "/dev/null", "serve", "webdav", str(data),
                    "--addr", f"127.0.0.1:{port}"])


SERVERS = {
    "kubepie": Server("kubepie", start_kubepie, "/files"),
    # FILESERVER_PROCESSES=2: one process per core of this 2-core machine.
    "kubepie2": Server("kubepie2", functools.partial(start_kubepie, processes=2), "/files"),
    "nginx": Server("nginx", start_nginx, "/files"),
    "apache": Server("apache", start_apache, "/files"),
    "wsgidav": Server("wsgidav", start_wsgidav, ""),
    "rclone": Server("rclone", start_rclone, ""),
}


def make_files(data: Path, size_mib: int) -> None:
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o777)
    with (data / "big.bin").open("wb") as out:
        block = os.urandom(1 << 20)
        for _ in range(size_mib):
            out.write(block)
    (data / "small.bin").write_bytes(os.urandom(4096))
    many = data / "many"
    many.mkdir()
    for index in range(10_000):
        (many / f"file-{index:05d}.dat").write_bytes(b"x" * (index % 512))
    for path in (data, many):
        path.chmod(0o777)
    for path in [data / "big.bin", data / "small.bin", *many.iterdir()]:
        path.chmod(0o666)


def curl(*args: str) -> dict[str, float]:
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{json}", *args],
                         capture_output=True, text=True, check=True, timeout=600).stdout
    result = json.loads(out)
    if int(result.get("http_code", 0)) >= 400:
        raise RuntimeError(f"curl {args[-1]}: HTTP {result['http_code']}")
    return result  # type: ignore[no-any-return]


def wrk(url: str, seconds: int) -> float:
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", url], capture_output=True,
                         text=True, check=True, timeout=seconds + 60).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            errors = [ln for ln in out.splitlines() if "Non-2xx" in ln or "Socket errors" in ln]
            if errors:
                print(f"    wrk: {'; '.join(e.strip() for e in errors)}", file=sys.stderr)
            return float(line.split()[1])
    raise RuntimeError(f"no rate in wrk's output: {out}")


@contextlib.contextmanager
def running(server: Server, data: Path, scratch: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    command = server.command(data, scratch, port)
    log = scratch / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command.argv, env=command.env, stdout=out,
                                   stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}{server.prefix}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/small.bin", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{server.name} did not start (exit {process.poll()}):\n"
                               f"{log.read_text()[-2000:]}")
        time.sleep(0.1)
    try:
        yield base, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(servers: dict[str, tuple[str, int]], data: Path, repeat: int,
            wrk_seconds: int) -> dict[str, dict[str, float]]:
    """Every measurement in rounds that visit each server in turn, so that a slow moment of
    this machine hits all of them alike rather than whichever happened to run then."""
    gets: dict[str, list[float]] = {name: [] for name in servers}
    puts: dict[str, list[float]] = {name: [] for name in servers}
    propfinds: dict[str, list[float]] = {name: [] for name in servers}
    small: dict[str, list[float]] = {name: [] for name in servers}
    small_cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
    for attempt in range(repeat):
        for name, (base, _) in servers.items():
            gets[name].append(curl(f"{base}/big.bin")["speed_download"] / 1e6)
        for name, (base, _) in servers.items():
            upload = f"upload-{name}-{attempt}.bin"
            puts[name].append(curl("-T", str(data / "big.bin"), f"{base}/{upload}")
                              ["speed_upload"] / 1e6)
            (data / upload).unlink(missing_ok=True)
        for _ in range(2):
            for name, (base, _) in servers.items():
                propfinds[name].append(curl("-X", "PROPFIND", "-H", "Depth: 1",
                                            f"{base}/many/")["time_total"])
    for _ in range(2):
        for name, (base, pid) in servers.items():
            with cpu_used({"server": descendants(pid)}) as used:
                small[name].append(wrk(f"{base}/small.bin", wrk_seconds))
            requests = small[name][-1] * wrk_seconds
            small_cpu[name].append((used["server"] / requests * 1e6,
                                    used["children"] / requests * 1e6))
    results = {}
    for name, (_, pid) in servers.items():
        rss, pss = tree_memory(pid)
        results[name] = {"get_mb_s": statistics.median(gets[name]),
                         "put_mb_s": statistics.median(puts[name]),
                         "propfind_s": statistics.median(propfinds[name]),
                         "small_req_s": statistics.median(small[name]),
                         "small_server_cpu_us": statistics.median(c[0] for c in small_cpu[name]),
                         "small_wrk_cpu_us": statistics.median(c[1] for c in small_cpu[name]),
                         "rss_mib": rss / (1 << 20), "pss_mib": pss / (1 << 20)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the big file")
    parser.add_argument("--repeat", type=int, default=3, help="runs per transfer measurement")
    parser.add_argument("--wrk-seconds", type=int, default=8)
    parser.add_argument("--only", default=",".join(SERVERS), help="servers, comma-separated")
    parser.add_argument("--dir", default=None, help="folder for the files (default: a temp "
                                                     "folder under /var/tmp, on disk)")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    missing = [tool for tool, needed in (("nginx", "nginx"), ("apache2", "apache"),
                                         ("rclone", "rclone"), ("wrk", None), ("curl", None))
               if (needed is None or needed in names) and not shutil.which(tool)]
    if "wsgidav" in names and not (VENV_BIN / "wsgidav").exists():
        missing.append("wsgidav (pip install -e '.[bench]')")
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 2
    base_dir = Path(args.dir or tempfile.mkdtemp(prefix="webdav-bench-", dir="/var/tmp"))
    base_dir.chmod(0o755)
    results: dict[str, dict[str, float]] = {}
    try:
        data = base_dir / "data"
        print(f"writing {args.size_mib} MiB + 10,000 small files to {data}", file=sys.stderr)
        make_files(data, args.size_mib)
        with contextlib.ExitStack() as stack:
            servers = {}
            for name in names:
                scratch = base_dir / f"scratch-{name}"
                scratch.mkdir()
                scratch.chmod(0o777)  # Apache's workers (www-data) keep their lock database here
                servers[name] = stack.enter_context(running(SERVERS[name], data, scratch))
            print(f"measuring {', '.join(names)} in {args.repeat} rounds", file=sys.stderr)
            results = measure(servers, data, args.repeat, args.wrk_seconds)
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)
    print(f"\n{'server':<9} {'GET MB/s':>9} {'PUT MB/s':>9} {'PROPFIND 10k s':>15} "
          f"{'4 KiB GET req/s':>16} {'µs CPU/GET':>11} {'wrk µs':>7} {'RSS MiB':>8} "
          f"{'PSS MiB':>8}")
    for name, row in results.items():
        print(f"{name:<9} {row['get_mb_s']:>9.0f} {row['put_mb_s']:>9.0f} "
              f"{row['propfind_s']:>15.3f} {row['small_req_s']:>16.0f} "
              f"{row['small_server_cpu_us']:>11.0f} {row['small_wrk_cpu_us']:>7.0f} "
              f"{row['rss_mib']:>8.1f} {row['pss_mib']:>8.1f}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
