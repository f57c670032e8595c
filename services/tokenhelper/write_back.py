"""Rotated refresh tokens go back to the hub's auth_state — and a failure never loses one.

With one-use refresh tokens (glewlwyd, Keycloak with "revoke refresh token"), the token the
provider returns on each refresh is the *only* valid one: if it died with this process, the
user's next login would be the only way back, and a provider with reuse detection may revoke
the whole token family when the old one is tried again. So a write-back that fails (hub
restarting, 5xx, timeout, even 403) is kept and retried with backoff, only the newest
auth_state is ever written, the access token keeps being served meanwhile, the state shows in
the log, ``/healthz`` and the metrics, and one last try is made at SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from services.runtime.retry import Backoff

log = logging.getLogger(__name__)

ONE_TRY = Backoff(attempts=1)
RETRY = Backoff(attempts=None, base=1.0, cap=30.0)


class AuthStateWriter(Protocol):
    async def set_auth_state(self, user: str, auth_state: dict[str, Any], *,
                             backoff: Backoff | None = None) -> None: ...


@dataclass
class WriteBackState:
    """What /healthz and the metrics show."""

    pending: bool = False
    pending_since: float | None = None  # time.time() of the oldest unsaved rotation
    failures: int = 0                   # failed tries since the last success
    last_error: str = ""
    written: int = 0


class WriteBack:
    def __init__(self, hub: AuthStateWriter, user: str, *, retry: Backoff = RETRY) -> None:
        self._hub = hub
        self._user = user
        self._retry = retry
        self._pending: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()
        self.state = WriteBackState()

    def submit(self, auth_state: dict[str, Any]) -> None:
        """The newest auth_state to store; it replaces any older one not yet written."""
        self._pending = auth_state
        if not self.state.pending:
            self.state.pending, self.state.pending_since = True, time.time()
        self._wake.set()

    def drop(self) -> None:
        """The hub has newer tokens than ours (a new login): nothing of ours to write."""
        self._pending = None
        self.state.pending, self.state.pending_since = False, None

    async def run(self) -> None:
        """Write whatever is pending, retrying with backoff until the hub takes it."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending is not None:
                if await self._try_once():
                    break
                delay = self._retry.delay(self.state.failures)
                log.warning("could not store the rotated refresh token at the hub; keeping it "
                            "and retrying", extra={"user": self._user,
                                                   "error": self.state.last_error,
                                                   "failures": self.state.failures,
                                                   "retry_in_s": round(delay, 1)})
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                    self._wake.clear()  # a newer rotation arrived: write that one now
                except TimeoutError:
                    pass

    async def flush(self) -> bool:
        """One last try (at SIGTERM; the caller bounds its time): True when nothing is left
        unsaved."""
        return self._pending is None or await self._try_once()

    async def _try_once(self) -> bool:
        async with self._writing:
            state = self._pending
            if state is None:
                return True
            try:
                await self._hub.set_auth_state(self._user, state, backoff=ONE_TRY)
            except Exception as exc:  # whatever failed, the token is kept for the next try
                self.state.failures += 1
                self.state.last_error = f"{type(exc).__name__}: {exc}"[:300]
                return False
            if self._pending is state:  # nothing newer arrived while we wrote
                self._pending = None
                waited = time.time() - (self.state.pending_since or time.time())
                self.state.pending, self.state.pending_since = False, None
                if self.state.failures:
                    log.info("rotated refresh token stored at the hub after failures",
                             extra={"user": self._user, "failures": self.state.failures,
                                    "waited_s": round(waited, 1)})
                self.state.failures, self.state.last_error = 0, ""
            self.state.written += 1
            return True
