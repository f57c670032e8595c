"""Keeps one user's access token fresh: one refresh at a time, cached in between.

Only this object ever holds the refresh token. Callers get AccessToken values.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from services.hub.client import HubClient, HubError
from services.runtime.retry import Backoff
from services.tokenhelper.narrowing import (
    AudienceParameter,
    Narrowing,
    NarrowingRefused,
    login_scopes,
)
from services.tokenhelper.provider import InvalidGrant, InvalidTarget, Provider, ProviderError
from services.tokenhelper.tokens import (
    AccessToken,
    TokenSet,
    after_narrowed_refresh,
    after_refresh,
    from_auth_state,
    issued_access_token,
)
from services.tokenhelper.write_back import ONE_TRY, WriteBack

log = logging.getLogger(__name__)

Clock = Callable[[], float]
NARROWED_CACHE = 32  # narrower tokens kept (one per audience and scopes asked for)
Listener = Callable[[AccessToken], Awaitable[None]]


class TokenUnavailable(Exception):
    """No valid access token can be handed out now; the message says why (for a 503)."""


NETWORK_POLICY_HINT = (
    "if the identity provider has a private address: Zero to JupyterHub's singleuser "
    "NetworkPolicy denies egress to private IPs by default "
    "(singleuser.networkPolicy.egressAllowRules.privateIPs); allow the provider in "
    "singleuser.networkPolicy.egress (docs/tokenhelper.md)")


def provider_hint(error: str) -> str | None:
    """A connection that never completes is what a NetworkPolicy drop looks like."""
    symptoms = ("ConnectError", "ConnectTimeout", "timed out", "Timeout", "unreachable",
                "Connection refused")
    return NETWORK_POLICY_HINT if any(s in error for s in symptoms) else None


class TokenBroker:
    def __init__(self, hub: HubClient, user: str, provider: Provider, *, min_valid: float,
                 write_back: WriteBack | None = None, clock: Clock = time.time,
                 audience_parameter: AudienceParameter = "resource") -> None:
        self.hub = hub
        # Set while the provider cannot be reached: {"error", "since", "hint"}.
        self.provider_problem: dict[str, Any] | None = None
        self.user = user
        self.provider = provider
        self.min_valid = min_valid
        self.write_back = write_back
        self.clock = clock
        self.audience_parameter = audience_parameter
        # Narrower tokens (an audience, fewer scopes), by what was asked, most recent last.
        self._narrowed: OrderedDict[Narrowing, AccessToken] = OrderedDict()
        self.narrowed_refreshes = 0
        # Refresh tokens this broker has used up at the provider (hashes, the last few): the
        # hub may still hold one while a write-back is pending, and must not be believed.
        self._spent: deque[str] = deque(maxlen=16)
        self.refreshes = 0
        self._tokens: TokenSet | None = None
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []

    def on_new_token(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @property
    def current(self) -> AccessToken | None:
        return self._tokens.access if self._tokens else None

    def refresh_due_in(self, min_valid: float | None = None) -> float:
        """Seconds until the token must be refreshed to keep ``min_valid`` left (0 = now)."""
        if self._tokens is None:
            return 0.0
        return self._due_in(self._tokens.access, min_valid)

    def _due_in(self, access: AccessToken, min_valid: float | None) -> float:
        left = access.remaining(self.clock())
        if left is None:
            return 0.0
        return max(0.0, left - self._margin(access, min_valid))

    def _margin(self, access: AccessToken, min_valid: float | None) -> float:
        """How much validity to keep: the asked minimum, capped to a share of the token's
        lifetime (half for the default, 90 % for a caller's ``min_valid``), so short-lived
        tokens are refreshed once per lifetime rather than on every request."""
        wanted, share = (self.min_valid, 0.5) if min_valid is None else (min_valid, 0.9)
        if access.lifetime:
            return min(wanted, access.lifetime * share)
        return wanted

    async def token(self, min_valid: float | None = None,
                    narrowing: Narrowing | None = None) -> AccessToken:
        """The default access token, or one narrowed to an audience and scopes (raises
        BadNarrowing or NarrowingRefused when that cannot be had)."""
        if narrowing is not None and not narrowing.is_default:
            cached = self._narrowed.get(narrowing)
            if cached is not None and self._due_in(cached, min_valid) > 0:
                return cached
            return await self._refresh_narrowed(narrowing, min_valid)
        if self._tokens is None or self.refresh_due_in(min_valid) <= 0:
            await self._refresh(min_valid)
        assert self._tokens is not None
        return self._tokens.access

    async def _refresh_narrowed(self, narrowing: Narrowing, min_valid: float | None
                                ) -> AccessToken:
        """One refresh grant naming the audience and scopes. It shares the refresh token
        (and the lock) with the default token: a rotating provider spends it either way."""
        async with self._lock:
            cached = self._narrowed.get(narrowing)
            if cached is not None and self._due_in(cached, min_valid) > 0:
                return cached  # refreshed by whoever held the lock before us
            if self._tokens is None:
                self._tokens = await self._read_auth_state()
            else:
                await self._adopt_newer_from_hub()
            narrowing.check_covered_by(login_scopes(self._tokens.auth_state,
                                                    self._tokens.access.value))
            fields = narrowing.refresh_parameters(self.audience_parameter)
            try:
                used, response = await self._grant(self._tokens, fields)
            except ProviderError as exc:
                left = cached.remaining(self.clock()) if cached is not None else None
                if cached is not None and left is not None and left > 0:
                    log.warning("provider unavailable, serving the cached narrower token",
                                extra={"error": str(exc), "remaining_s": round(left, 1)})
                    return cached
                raise TokenUnavailable(f"the identity provider is unreachable ({exc})") from None
            except InvalidTarget as exc:
                raise NarrowingRefused(f"the identity provider refused {narrowing.describe()} "
                                       f"({exc}); an audience must be one the login may "
                                       "have tokens for") from None
            self._adopt(used, after_narrowed_refresh(used, response))
            narrowing.check_issued(response, str(response.get("access_token", "")))
            access = issued_access_token(response, self.clock())
            self.narrowed_refreshes += 1
            self._narrowed[narrowing] = access
            self._narrowed.move_to_end(narrowing)
            while len(self._narrowed) > NARROWED_CACHE:
                self._narrowed.popitem(last=False)
            log.info("narrower access token issued", extra={
                "user": self.user, "asked": narrowing.describe(),
                "expires_in_s": access.lifetime})
            return access

    async def _refresh(self, min_valid: float | None) -> None:
        async with self._lock:  # everyone else waits for this one refresh
            if self._tokens is not None and self.refresh_due_in(min_valid) > 0:
                return  # refreshed by whoever held the lock before us
            if self._tokens is None:
                self._tokens = await self._read_auth_state()
            else:
                await self._adopt_newer_from_hub()
            if self.refresh_due_in(min_valid) > 0:
                await self._announce()
                return
            try:
                await self._refresh_at_provider(self._tokens)
            except ProviderError as exc:
                left = self._tokens.access.remaining(self.clock())
                if left is None or left > 0:  # None: the hub's token, of unknown age
                    log.warning("provider unavailable, serving the cached token",
                                extra={"error": str(exc),
                                       "remaining_s": None if left is None else round(left, 1)})
                    return
                raise TokenUnavailable(f"the identity provider is unreachable and the last "
                                       f"access token has expired ({exc})") from None

    def _note_provider_problem(self, exc: ProviderError) -> None:
        """What /healthz and the status bar show while the provider cannot be reached."""
        since = (self.provider_problem or {}).get("since") or self.clock()
        text = str(exc)
        self.provider_problem = {"error": text, "since": since,
                                 "hint": provider_hint(text)}

    async def _adopt_newer_from_hub(self) -> bool:
        """Before refreshing, take the hub's auth_state if the hub refreshed meanwhile.

        With a rotating provider, using a refresh token the hub has already used may make
        the provider revoke the whole token family (reuse detection), so the check has to come
        before the refresh, not after a failure. One hub read per refresh, i.e. per lifetime.
        """
        assert self._tokens is not None
        try:  # one quick try: a hub that is down must not hold the refresh up
            latest = await self._read_auth_state(backoff=ONE_TRY)
        except TokenUnavailable as exc:  # the hub is down: refresh with what we have
            log.warning("could not check the hub's auth_state", extra={"error": str(exc)})
            return False
        if latest.refresh_token and latest.refresh_token != self._tokens.refresh_token \
                and not self._used_up(latest.refresh_token):
            log.info("the hub refreshed the tokens meanwhile; using its newer ones")
            self._tokens = latest
            if self.write_back is not None:
                self.write_back.drop()  # ours are older than the hub's now
            return True
        return False

    def _used_up(self, refresh_token: str) -> bool:
        """True for a refresh token this broker already spent: the hub is behind us (a
        write-back is pending), not ahead; using it again would be a replay."""
        return _digest(refresh_token) in self._spent

    async def _refresh_at_provider(self, tokens: TokenSet) -> None:
        used, response = await self._grant(tokens)
        refreshed = after_refresh(used, response, self.clock())
        self.refreshes += 1
        rotated = self._adopt(used, refreshed)
        log.info("access token refreshed", extra={
            "user": self.user, "expires_in_s": refreshed.access.lifetime, "rotated": rotated,
            "refreshes": self.refreshes})
        await self._announce()

    async def _grant(self, tokens: TokenSet, fields: Sequence[tuple[str, str]] = ()
                     ) -> tuple[TokenSet, dict[str, Any]]:
        """The refresh grant with ``tokens``' refresh token, or with the hub's newer one when
        the hub rotated it meanwhile; returns the token set used and the provider's answer."""
        if not tokens.refresh_token:
            raise TokenUnavailable("no refresh token in auth_state: log in to JupyterHub again")
        try:
            answer = await self.provider.refresh(tokens.refresh_token, fields)
            self.provider_problem = None
            return tokens, answer
        except ProviderError as exc:
            self._note_provider_problem(exc)
            raise
        except InvalidGrant as exc:
            # The hub (OAuthenticator.refresh_user) may have refreshed, and rotated, meanwhile.
            latest = await self._read_auth_state()
            if latest.refresh_token == tokens.refresh_token or \
                    self._used_up(latest.refresh_token or ""):
                raise TokenUnavailable(f"the provider rejected the refresh token ({exc}): "
                                       "log in to JupyterHub again") from None
            log.info("refresh token was rotated by the hub; using its new one")
            self._tokens = latest
            try:
                return latest, await self.provider.refresh(latest.refresh_token or "", fields)
            except InvalidGrant as again:
                raise TokenUnavailable(f"the provider rejected the refresh token ({again}): "
                                       "log in to JupyterHub again") from None

    def _adopt(self, used: TokenSet, refreshed: TokenSet) -> bool:
        """Make ``refreshed`` current; a rotated refresh token marks the old one spent and is
        written back to the hub. True when it rotated."""
        rotated = refreshed.refresh_token != used.refresh_token
        if rotated and used.refresh_token:
            self._spent.append(_digest(used.refresh_token))
        self._tokens = refreshed
        if rotated and self.write_back is not None:
            self.write_back.submit(refreshed.auth_state)  # stored in the background
        return rotated

    async def _read_auth_state(self, backoff: Backoff | None = None) -> TokenSet:
        try:
            state = await self.hub.get_auth_state(self.user, backoff=backoff)
        except HubError as exc:
            raise TokenUnavailable(f"cannot read auth_state from the hub: {exc}") from None
        if state is None:
            raise TokenUnavailable(f"the hub has no auth_state for {self.user}")
        try:
            return from_auth_state(state)
        except ValueError as exc:
            raise TokenUnavailable(str(exc)) from None

    async def _announce(self) -> None:
        assert self._tokens is not None
        for listener in self._listeners:
            await listener(self._tokens.access)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
