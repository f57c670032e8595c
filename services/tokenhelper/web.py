"""``/token`` (text) and ``/v1/token`` (JSON) on 127.0.0.1: the access token and nothing else."""

from __future__ import annotations

from aiohttp import web

from services.runtime.durations import parse_duration
from services.tokenhelper.broker import TokenBroker, TokenUnavailable


def add_routes(app: web.Application, broker: TokenBroker) -> None:
    async def fetch(request: web.Request) -> float | None:
        raw = request.query.get("min_valid")
        if raw is None:
            return None
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"min_valid: {exc}\n") from None

    async def token_text(request: web.Request) -> web.Response:
        try:
            access = await broker.token(await fetch(request))
        except TokenUnavailable as exc:
            return web.Response(status=503, text=f"{exc}\n", headers=NO_STORE)
        return web.Response(text=access.value + "\n", headers=NO_STORE)

    async def token_json(request: web.Request) -> web.Response:
        try:
            access = await broker.token(await fetch(request))
        except TokenUnavailable as exc:
            return web.json_response({"error": "token_unavailable", "message": str(exc)},
                                     status=503, headers=NO_STORE)
        body: dict[str, object] = {"access_token": access.value, "token_type": "Bearer",
                                   "expires_at": None, "expires_in": None}
        if access.expires_at is not None:
            body["expires_at"] = int(access.expires_at)
            body["expires_in"] = max(0, int(access.expires_at - broker.clock()))
        return web.json_response(body, headers=NO_STORE)

    app.router.add_get("/token", token_text)
    app.router.add_get("/v1/token", token_json)


NO_STORE = {"Cache-Control": "no-store"}
