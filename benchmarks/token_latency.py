"""How fast the tokenhelper hands out a cached access token.

Starts the real parts (oidc-provider-mock, JupyterHub with GenericOAuthenticator, a server with
its tokenhelper), then for a fixed time per case measures, from one process on loopback:
  - GET /token and GET /v1/token over HTTP with 1 and 16 concurrent keep-alive clients,
  - the oidc-agent socket (encrypted exchange, one connection per request, as liboidc-agent
    does) with 1 and 16 concurrent clients,
reporting requests/s and latency p50/p99 (ms).

    .venv/bin/python -m benchmarks.token_latency [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import nacl.bindings as sodium

from harness.hub import Hub, process_env, sidecar_get, sidecar_url
from harness.oidc import OidcProvider, log_in
from services.runtime import sidecar_urls
from services.tokenhelper.agent_socket import decrypt, encrypt

REQUEST = '{"request":"access_token","account":"bench","min_valid_period":0}'


async def http_case(url: str, path: str, clients: int, seconds: float) -> list[float]:
    """GETs of ``path`` on the sidecar at ``url`` (its loopback port, or its UNIX socket as
    the embedded default runs it)."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    socket = sidecar_urls.socket_of(url)

    async def client() -> None:
        connector = aiohttp.UnixConnector(path=socket) if socket else None
        # aiohttp: lighter than httpx as a load generator
        async with aiohttp.ClientSession(connector=connector) as http:
            while time.perf_counter() < stop:
                start = time.perf_counter()
                async with http.get(sidecar_urls.http_url(url, path)) as response:
                    await response.read()
                latencies.append(time.perf_counter() - start)
                assert response.status == 200

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


async def socket_case(path: str, clients: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            reader, writer = await asyncio.open_unix_connection(path)
            public, secret = sodium.crypto_box_keypair()
            writer.write(base64.b64encode(public))
            server = base64.b64decode(await reader.read(1024))
            writer.write(encrypt(REQUEST, server, secret))
            answer = decrypt(await reader.read(), server, secret)
            writer.close()
            latencies.append(time.perf_counter() - start)
            assert '"success"' in answer

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


def report(name: str, latencies: list[float], seconds: float) -> None:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"| {name} | {len(latencies) / seconds:,.0f} | "
          f"{statistics.median(ordered) * 1000:.2f} | {p99 * 1000:.2f} |")


async def measure(env: dict[str, str], socket_path: str, seconds: float) -> None:
    url = sidecar_url(env, "TOKENHELPER_")
    over = "UNIX socket" if sidecar_urls.socket_of(url) else "loopback TCP"
    print(f"HTTP over {over}\n| case | requests/s | p50 ms | p99 ms |\n|---|---|---|---|")
    for clients in (1, 16):
        for path in ("/token", "/v1/token"):
            report(f"HTTP GET {path}, {clients} client(s)",
                   await http_case(url, path, clients, seconds), seconds)
        report(f"oidc-agent socket, {clients} client(s)",
               await socket_case(socket_path, clients, seconds), seconds)


def main(seconds: float) -> None:
    state = Path(tempfile.mkdtemp(prefix="token-bench-"))
    provider = OidcProvider(state / "provider.log", token_max_age=300)
    provider.start()
    hub = Hub(state / "hub", oidc_issuer=provider.issuer)
    try:
        hub.start()
        try:
            log_in(f"http://127.0.0.1:{hub.port}", "alice").close()
            model = hub.start_server("alice", profile="unlimited")
            helper = process_env(int(model["state"]["sidecar_pids"]["tokenhelper"]))
            notebook = process_env(int(model["state"]["pid"]))
            sidecar_get(sidecar_url(helper, "TOKENHELPER_"), "/token")  # warm the cache
            asyncio.run(measure(helper, notebook["OIDC_SOCK"], seconds))
        finally:
            hub.api("DELETE", "/users/alice/server")
            hub.wait_stopped("alice")
            hub.stop()
    finally:
        provider.stop()  # even when the hub part failed (a failed run once left it running)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    main(parser.parse_args().seconds)
