"""``/token`` (text) and ``/v1/token`` (JSON) on 127.0.0.1: the access token and nothing else.

``?audience=…&scope=…`` (space-separated lists, like ``oidc-token --aud --scope``) asks for a
token meant for one service; ``?min_valid=5m`` for one that stays valid that long.
"""

from __future__ import annotations

from aiohttp import web

from services.runtime.durations import parse_duration
from services.tokenhelper.broker import TokenBroker, TokenUnavailable
from services.tokenhelper.narrowing import BadNarrowing, Narrowing, NarrowingRefused
from services.tokenhelper.tokens import AccessToken


class Refused(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error = status, error


def add_routes(app: web.Application, broker: TokenBroker) -> None:
    async def fetch(request: web.Request) -> AccessToken:
        raw = request.query.get("min_valid")
        try:
            min_valid = None if raw is None else parse_duration(raw)
        except ValueError as exc:
            raise Refused(400, "invalid_request", f"min_valid: {exc}") from None
        try:
            narrowing = Narrowing.parse(" ".join(request.query.getall("audience", [])),
                                        " ".join(request.query.getall("scope", [])))
            return await broker.token(min_valid, narrowing)
        except BadNarrowing as exc:
            raise Refused(400, "invalid_request", str(exc)) from None
        except NarrowingRefused as exc:
            raise Refused(400, "invalid_target", str(exc)) from None
        except TokenUnavailable as exc:
            raise Refused(503, "token_unavailable", str(exc)) from None

    async def token_text(request: web.Request) -> web.Response:
        try:
            access = await fetch(request)
        except Refused as exc:
            return web.Response(status=exc.status, text=f"{exc}\n", headers=NO_STORE)
        return web.Response(text=access.value + "\n", headers=NO_STORE)

    async def token_json(request: web.Request) -> web.Response:
        try:
            access = await fetch(request)
        except Refused as exc:
            return web.json_response({"error": exc.error, "message": str(exc)},
                                     status=exc.status, headers=NO_STORE)
        body: dict[str, object] = {"access_token": access.value, "token_type": "Bearer",
                                   "expires_at": None, "expires_in": None}
        if access.expires_at is not None:
            body["expires_at"] = int(access.expires_at)
            body["expires_in"] = max(0, int(access.expires_at - broker.clock()))
        return web.json_response(body, headers=NO_STORE)

    app.router.add_get("/token", token_text)
    app.router.add_get("/v1/token", token_json)


NO_STORE = {"Cache-Control": "no-store"}
