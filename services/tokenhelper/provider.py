"""The identity provider: discovery and the refresh grant, through authlib."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import authlib.deprecate  # noqa: F401 - registers authlib's "always" filter; ours goes before it
import httpx

# authlib 1.x prefers the httpx2 fork and warns when it falls back to httpx, which works.
warnings.filterwarnings("ignore", message="The httpx module is deprecated")
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError  # noqa: E402

TOKEN_REQUEST_HEADERS = {"Accept": "application/json"}


class ProviderError(Exception):
    """The provider could not be reached or answered nonsense: worth retrying later."""


class InvalidGrant(Exception):
    """The provider rejected the refresh token (expired, revoked, or already rotated)."""


class InvalidTarget(Exception):
    """The provider will not issue a token for that audience (RFC 8707 ``invalid_target``)
    or with those scopes (``invalid_scope``); the refresh token is still good."""


class Provider:
    def __init__(self, issuer: str, client_id: str, client_secret: str,
                 *, timeout: float = 10.0) -> None:
        self.issuer = issuer.rstrip("/")
        self._client = AsyncOAuth2Client(client_id=client_id, client_secret=client_secret,
                                         timeout=timeout)
        self._discovery = httpx.AsyncClient(timeout=timeout)
        self._metadata: dict[str, Any] | None = None

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._discovery.aclose()

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                response = await self._discovery.get(url)
                response.raise_for_status()
                metadata = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise ProviderError(f"discovery at {url} failed: {exc}") from None
            if metadata.get("issuer", "").rstrip("/") != self.issuer:
                raise ProviderError(f"discovery says issuer {metadata.get('issuer')!r}, "
                                    f"expected {self.issuer!r}")
            methods = metadata.get("token_endpoint_auth_methods_supported") or []
            if methods and "client_secret_basic" not in methods and \
                    "client_secret_post" in methods:
                self._client.token_endpoint_auth_method = "client_secret_post"  # noqa: S105
            self._metadata = metadata
        return self._metadata

    async def refresh(self, refresh_token: str,
                      fields: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """The refresh grant; ``fields``: more form fields (``resource`` may repeat, RFC 8707
        §2, which authlib's refresh_token() would fold into one: so the request is built
        here and authlib authenticates the client and reads the answer)."""
        endpoint = (await self.metadata())["token_endpoint"]
        form: dict[str, str | list[str]] = {"grant_type": "refresh_token",
                                            "refresh_token": refresh_token}
        for name, value in fields:
            if name in form:
                previous = form[name]
                form[name] = [*([previous] if isinstance(previous, str) else previous), value]
            else:
                form[name] = value
        try:
            response = await self._client.post(
                endpoint, data=form, headers=TOKEN_REQUEST_HEADERS,
                auth=self._client.client_auth(self._client.token_endpoint_auth_method))
            token = self._client.parse_response_token(response)
        except OAuthError as exc:
            if exc.error == "invalid_grant":
                raise InvalidGrant(exc.description or "invalid_grant") from None
            if exc.error in ("invalid_target", "invalid_scope"):
                raise InvalidTarget(f"{exc.error}: {exc.description or 'refused'}") from None
            raise ProviderError(f"refresh failed: {exc.error}") from None
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 400:
                # RFC 6749 §5.2 puts invalid_grant in a 400 body; some providers (glewlwyd)
                # send the 400 for a used or expired refresh token with no body at all.
                raise InvalidGrant("the token endpoint answered 400") from None
            raise ProviderError(f"refresh failed: HTTP {exc.response.status_code}") from None
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderError(f"refresh failed: {type(exc).__name__}: {exc}") from None
        return dict(token)
