"""The real NorduGrid ARC 6 client (Debian nordugrid-arc-client) on the tokenhelper's token."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from aiohttp import web
from cryptography import x509
from pytest_aiohttp import AiohttpServer

from harness.tools import require_tool
from services.tokenhelper.arc import profile_snippet, write_placeholder


def test_placeholder_is_created_once_with_strict_modes(tmp_path: Path) -> None:
    cert, key = write_placeholder(tmp_path, os.geteuid())
    assert stat.S_IMODE(key.stat().st_mode) == 0o400
    assert stat.S_IMODE(cert.stat().st_mode) == 0o644
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    assert "not a grid credential" in parsed.subject.rfc4514_string()
    before = cert.read_bytes()
    assert write_placeholder(tmp_path, os.geteuid()) == (cert, key)
    assert cert.read_bytes() == before


def storage(received: list[str | None]) -> web.Application:
    """A stand-in storage endpoint that records the Authorization header it is sent."""
    async def handle(request: web.Request) -> web.Response:
        received.append(request.headers.get("Authorization"))
        return web.Response(body=b"payload\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def arccp(tmp_path: Path, env: dict[str, str], url: str) -> tuple[int, str]:
    snippet = tmp_path / "arc-token.sh"
    snippet.write_text(profile_snippet())
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", f'source "{snippet}"; arccp -f "$0" "$1"', url, str(tmp_path / "out"),
        env={"PATH": os.environ["PATH"], "HOME": str(home), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(errors="replace")


async def test_arccp_sends_the_bearer_token_with_the_placeholder(
        tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    require_tool("arccp")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cert, key = write_placeholder(run_dir, os.geteuid())
    token_file = run_dir / f"bt_u{os.geteuid()}"
    token_file.write_text("access-token-from-the-tokenhelper\n")
    received: list[str | None] = []
    server = await aiohttp_server(storage(received))
    url = str(server.make_url("/data/file.txt"))
    code, out = await arccp(tmp_path, {"BEARER_TOKEN_FILE": str(token_file)}, url)
    assert code != 0 and "Failed configuration initialization" in out  # ARC alone
    assert received == []

    env = {"BEARER_TOKEN_FILE": str(token_file),
           "JUPYTERHUB_SIDECARS_ARC_CERT": str(cert),
           "JUPYTERHUB_SIDECARS_ARC_KEY": str(key)}
    code, out = await arccp(tmp_path, env, url)
    assert code == 0, out
    assert received and set(received) == {"Bearer access-token-from-the-tokenhelper"}
    assert (tmp_path / "out").read_bytes() == b"payload\n"

    # A user with an X.509 proxy of their own keeps using it: no placeholder slipped in.
    received.clear()
    code, out = await arccp(tmp_path, {**env, "X509_USER_PROXY": str(tmp_path / "none")},
                            url)
    assert code != 0 and received == []
