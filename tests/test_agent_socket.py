"""The oidc-agent compatible socket, spoken to by the real oidc-token (Debian oidc-agent-cli)."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from pathlib import Path

import nacl.bindings as sodium
import pytest

from harness.tools import require_tool
from services.tokenhelper.agent_socket import AgentSocket, decrypt, encrypt
from services.tokenhelper.broker import TokenUnavailable
from services.tokenhelper.narrowing import Narrowing
from services.tokenhelper.tokens import AccessToken


class Broker:
    """Hands out a fixed token, or fails, and records the min_valid it was asked for."""

    def __init__(self, token: str | None = "the-access-token") -> None:
        self.value = token
        self.asked: list[float | None] = []
        self.narrowed: list[Narrowing | None] = []

    async def token(self, min_valid: float | None = None,
                    narrowing: Narrowing | None = None) -> AccessToken:
        self.asked.append(min_valid)
        self.narrowed.append(narrowing)
        if self.value is None:
            raise TokenUnavailable("the identity provider is unreachable")
        return AccessToken(self.value, 1_900_000_000.0)


async def serve(tmp_path: Path, broker: Broker) -> tuple[AgentSocket, Path]:
    agent = AgentSocket(broker, "https://idp.example.org")  # type: ignore[arg-type]
    path = tmp_path / "oidc-agent.sock"
    await agent.start(path, os.geteuid())
    return agent, path


async def oidc_token(path: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        require_tool("oidc-token"), *args, env={**os.environ, "OIDC_SOCK": str(path)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 20)
    return process.returncode or 0, out.decode().strip(), err.decode().strip()


async def test_real_oidc_token_gets_the_token_over_the_encrypted_ipc(tmp_path: Path) -> None:
    broker = Broker()
    agent, path = await serve(tmp_path, broker)
    try:
        code, out, err = await oidc_token(path, "any-account")
        assert (code, out) == (0, "the-access-token"), err
        code, out, err = await oidc_token(path, "--time=300", "--issuer", "facility")
        assert (code, out) == (0, "https://idp.example.org"), err
        code, out, err = await oidc_token(path, "-e", "facility")
        assert (code, out) == (0, "1900000000"), err
        assert broker.asked == [None, 300.0, None]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        await agent.close()


async def test_real_oidc_token_asks_for_an_audience_and_scopes(tmp_path: Path) -> None:
    """The fields oidc-token 4.2 sends for ``--aud`` and ``--scope`` (space-separated)."""
    broker = Broker()
    agent, path = await serve(tmp_path, broker)
    try:
        code, out, err = await oidc_token(path, "--aud=https://dcache.example.org https://b.ex",
                                          "--scope=storage.read:/home openid", "facility")
        assert (code, out) == (0, "the-access-token"), err
        assert broker.narrowed == [Narrowing(("https://b.ex", "https://dcache.example.org"),
                                             ("openid", "storage.read:/home"))]
        code, out, err = await oidc_token(path, "--aud=bad\u0001value", "facility")
        assert code != 0 and "not a valid value" in err
    finally:
        await agent.close()


async def test_real_oidc_token_reports_why_there_is_no_token(tmp_path: Path) -> None:
    agent, path = await serve(tmp_path, Broker(token=None))
    try:
        code, out, err = await oidc_token(path, "facility")
        assert code != 0 and out == ""
        assert "identity provider is unreachable" in err
    finally:
        await agent.close()


async def test_tampered_request_gets_no_answer(tmp_path: Path) -> None:
    agent, path = await serve(tmp_path, Broker())
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        client_pk, client_sk = sodium.crypto_box_keypair()
        writer.write(base64.b64encode(client_pk))
        server_pk = base64.b64decode(await reader.read(1024))
        request = '{"request":"access_token","account":"x"}'
        sealed = bytearray(encrypt(request, server_pk, client_sk))
        sealed[-5] = ord("A") if sealed[-5] != ord("A") else ord("B")  # flip the MAC/cipher
        writer.write(bytes(sealed))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing told
        writer.close()

        # The same exchange untampered does work, and the answer is encrypted to us.
        reader, writer = await asyncio.open_unix_connection(str(path))
        client_pk, client_sk = sodium.crypto_box_keypair()
        writer.write(base64.b64encode(client_pk))
        server_pk = base64.b64decode(await reader.read(1024))
        writer.write(encrypt(request, server_pk, client_sk))
        answer = await asyncio.wait_for(reader.read(), 5)
        assert b"the-access-token" not in answer
        assert '"access_token": "the-access-token"' in decrypt(answer, server_pk, client_sk)
        writer.close()
    finally:
        await agent.close()


@pytest.mark.parametrize("request_kind", ["add", "remove", "loaded_accounts", "delete"])
async def test_only_access_tokens_are_handed_out(tmp_path: Path, request_kind: str) -> None:
    agent = AgentSocket(Broker(), "https://idp.example.org")  # type: ignore[arg-type]
    answer = await agent.answer({"request": request_kind, "account": "x"})
    assert answer["status"] == "failure" and "only hands out access tokens" in answer["error"]
