"""50 concurrent clients of 10 users doing GET/PUT through the gateway for 30 s: no error and
no answer from another user's server. (Throughput is measured in benchmarks/, not here.)"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from harness.gateway import Gateway, access_token, remove, temp_root, write_storage
from harness.oidc import OidcProvider

pytestmark = pytest.mark.slow
USERS = [{"sub": f"load{n:02d}", "preferred_username": f"load{n:02d}", "uidNumber": 3000 + n,
          "gidNumber": 3000 + n} for n in range(10)]
CLIENTS_PER_USER = 5
DURATION = 30.0


@pytest.fixture(scope="module")
def served() -> Iterator[Gateway]:
    root = temp_root()
    root.chmod(0o755)
    for user in USERS:
        home = root / "home" / str(user["sub"])
        home.mkdir(parents=True)
        (home / "whoami.txt").write_text(str(user["sub"]))
        if os.geteuid() == 0:
            for path in (home, home / "whoami.txt"):
                os.chown(path, int(user["uidNumber"]), int(user["gidNumber"]))
            home.chmod(0o700)
    provider = OidcProvider(root / "provider.log", token_max_age=600, users=USERS)
    provider.start()
    gateway = Gateway(provider, root, {"KUBEPIE_STORAGE_FILE": str(write_storage(root,
                                                                                 data=False)),
                                       "KUBEPIE_LOG_LEVEL": "warning",
                                       "KUBEPIE_OPAQUE_TOKENS": "userinfo"})
    try:
        yield gateway.start()
    finally:
        gateway.stop()
        provider.stop()
        remove(root)


async def _client(url: str, user: str, token: str, number: int, until: float,
                  outcomes: Counter[str]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        round_ = 0
        while time.monotonic() < until:
            body = os.urandom(32 * 1024 + number * 1024 + round_ % 7)
            path = f"/home/c{number}-{round_ % 3}.bin"
            put = await client.put(path, content=body)
            got = await client.get(path)
            who = await client.get("/home/whoami.txt")
            outcomes[f"PUT {put.status_code}"] += 1
            outcomes[f"GET {got.status_code}"] += 1
            if hashlib.sha256(got.content).digest() != hashlib.sha256(body).digest():
                outcomes["corrupted"] += 1
            if who.text != user:
                outcomes["cross-user"] += 1
            round_ += 1


async def test_fifty_clients_of_ten_users_for_thirty_seconds(served: Gateway) -> None:
    tokens = {str(u["sub"]): await asyncio.to_thread(
        lambda u=u: access_token(served.provider, str(u["sub"]))) for u in USERS}
    outcomes: Counter[str] = Counter()
    until = time.monotonic() + DURATION
    await asyncio.gather(*(
        _client(served.url, user, token, number, until, outcomes)
        for user, token in tokens.items() for number in range(CLIENTS_PER_USER)))
    print(dict(outcomes))
    assert outcomes["cross-user"] == 0 and outcomes["corrupted"] == 0
    assert set(outcomes) == {"PUT 201", "PUT 204", "GET 200"} or \
        set(outcomes) == {"PUT 201", "GET 200"}, outcomes
    assert outcomes["GET 200"] > 10 * CLIENTS_PER_USER * 5  # every client kept going
    for user in USERS:
        files = {p.name for p in (served.root / "home" / str(user["sub"])).iterdir()}
        assert {f"c{n}-0.bin" for n in range(CLIENTS_PER_USER)} <= files
        if os.geteuid() == 0:
            uid = (served.root / "home" / str(user["sub"]) / "c0-0.bin").stat().st_uid
            assert uid == user["uidNumber"]
