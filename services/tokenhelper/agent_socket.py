"""An oidc-agent compatible UNIX socket, so ``oidc-token`` and liboidc-agent clients work.

oidc-agent 4.2 clients (liboidc-agent4) speak an encrypted request/response over a stream socket:
  1. client → a fresh X25519 public key, base64;
  2. server → a fresh public key of its own, base64;
  3. client → ``<plaintext length>:<nonce b64>:<box b64>``: libsodium crypto_box (X25519,
     XSalsa20-Poly1305) from the client's secret key to the server's public key;
  4. server → the JSON answer the same way, from its secret key to the client's, then closes.
Base64 is the original alphabet with padding. (Checked against oidc-token 4.2.6: it seals with
crypto_box, not with crypto_kx session keys and secretbox as older sources suggest.)
A client may also send plain JSON, and gets plain JSON back.

The request's ``account`` is not checked (this socket serves exactly one user's token; any
account name works); ``min_valid_period`` is honoured; ``audience`` and ``scope`` (what
``oidc-token --aud --scope`` send) get a token narrowed to them (services/tokenhelper/narrowing.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
from pathlib import Path
from typing import Any

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils

from services.tokenhelper.broker import TokenBroker, TokenUnavailable
from services.tokenhelper.narrowing import BadNarrowing, Narrowing, NarrowingRefused

log = logging.getLogger(__name__)

KEY_B64_LEN = 44  # base64 of a 32-byte public key, with padding
BOX_MAC_BYTES = 16  # Poly1305 tag that crypto_box prepends
MAX_MESSAGE = 64 * 1024
TIMEOUT = 10.0


class ProtocolError(Exception):
    pass


class AgentSocket:
    def __init__(self, broker: TokenBroker, issuer: str) -> None:
        self.broker = broker
        self.issuer = issuer
        self.served = 0
        self._server: asyncio.Server | None = None

    async def start(self, path: Path, uid: int) -> None:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        self._server = await asyncio.start_unix_server(self._handle, path=str(path))
        await asyncio.to_thread(_restrict, path, uid)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                await self._converse(reader, writer)
        except (ProtocolError, TimeoutError, ConnectionError, nacl.exceptions.CryptoError,
                ValueError) as exc:
            log.warning("oidc-agent socket: bad exchange", extra={"error": str(exc)})
        except Exception:
            log.exception("oidc-agent socket: unexpected error")
        finally:
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                        ) -> None:
        first = await reader.read(MAX_MESSAGE)
        if first.lstrip().startswith(b"{"):  # an unencrypted client
            answer = await self.answer(json.loads(first))
            writer.write(json.dumps(answer).encode())
            await writer.drain()
            return
        while len(first) < KEY_B64_LEN:
            more = await reader.read(KEY_B64_LEN - len(first))
            if not more:
                raise ProtocolError("client closed during key exchange")
            first += more
        client_pk = _b64decode(first[:KEY_B64_LEN], sodium.crypto_box_PUBLICKEYBYTES)
        server_pk, server_sk = sodium.crypto_box_keypair()
        writer.write(base64.b64encode(server_pk))
        await writer.drain()
        request = decrypt(await _read_sealed(reader), client_pk, server_sk)
        answer = await self.answer(json.loads(request))
        writer.write(encrypt(json.dumps(answer), client_pk, server_sk))
        await writer.drain()

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        kind = request.get("request")
        if kind != "access_token":
            return {"status": "failure",
                    "error": f"this socket only hands out access tokens, not {kind!r}"}
        try:
            min_valid = float(request.get("min_valid_period") or 0) or None
        except (TypeError, ValueError):
            return {"status": "failure", "error": "min_valid_period must be a number"}
        try:
            narrowing = Narrowing.parse(_text(request.get("audience")),
                                        _text(request.get("scope")))
            access = await self.broker.token(min_valid, narrowing)
        except (TokenUnavailable, BadNarrowing, NarrowingRefused) as exc:
            return {"status": "failure", "error": str(exc)}
        self.served += 1
        log.info("oidc-agent socket: token handed out",
                 extra={"account": str(request.get("account", ""))[:64],
                        "application": str(request.get("application_hint", ""))[:64]})
        return {"status": "success", "access_token": access.value, "issuer": self.issuer,
                "expires_at": int(access.expires_at or 0)}


def _text(value: object) -> str | None:
    """A space-separated list as oidc-token sends it (a JSON list is taken too)."""
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return None if value is None else str(value)


def _restrict(path: Path, uid: int) -> None:
    """Only the notebook user may connect (a socket's mode is its access control)."""
    path.chmod(0o600)
    if os.geteuid() == 0 and path.stat().st_uid != uid:
        os.chown(path, uid, -1)


async def _read_sealed(reader: asyncio.StreamReader) -> bytes:
    """``len:nonce:cipher`` arrives without a terminator: its length follows from ``len``."""
    data = b""
    while True:
        chunk = await reader.read(MAX_MESSAGE)
        if not chunk:
            raise ProtocolError("client closed before its request was complete")
        data += chunk
        if len(data) > MAX_MESSAGE:
            raise ProtocolError("request too large")
        head, sep, _ = data.partition(b":")
        if not sep:
            continue
        if not head.isdigit():
            raise ProtocolError("malformed encrypted request")
        length = int(head)
        expected = len(head) + 1 + 32 + 1 + 4 * ((length + 16 + 2) // 3)
        if len(data) >= expected:
            return data[:expected]


def encrypt(message: str, peer_pk: bytes, own_sk: bytes) -> bytes:
    plain = message.encode()
    nonce = nacl.utils.random(sodium.crypto_box_NONCEBYTES)
    sealed = sodium.crypto_box(plain, nonce, peer_pk, own_sk)
    return b"%d:%s:%s" % (len(plain), base64.b64encode(nonce), base64.b64encode(sealed))


def decrypt(sealed: bytes, peer_pk: bytes, own_sk: bytes) -> str:
    try:
        length_text, nonce_b64, cipher_b64 = sealed.split(b":")
    except ValueError:
        raise ProtocolError("malformed encrypted message") from None
    length = int(length_text)
    nonce = _b64decode(nonce_b64, sodium.crypto_box_NONCEBYTES)
    cipher = _b64decode(cipher_b64, length + BOX_MAC_BYTES)
    return sodium.crypto_box_open(cipher, nonce, peer_pk, own_sk).decode()


def _b64decode(data: bytes, size: int) -> bytes:
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error:
        raise ProtocolError("bad base64") from None
    if len(raw) != size:
        raise ProtocolError(f"expected {size} bytes, got {len(raw)}")
    return raw
