"""Making, listing and revoking share links: a page after the browser login, and a JSON API
for scripts (``$BEARER_TOKEN_FILE`` in a notebook, an access key anywhere).

    curl -H "Authorization: Bearer $(cat $BEARER_TOKEN_FILE)" -d path=/home/results \\
         -d days=7 https://files.example.org/_kubepie/api/links

The API takes credentials in the Authorization header only (a cookie could be sent by another
site's form); the page's forms carry a CSRF token bound to the session. A link's URL holds its
token and is shown once, like an access key's secret.
"""

from __future__ import annotations

import json
import time
from html import escape
from typing import Any

from aiohttp import web

from services.identity.claims import Identity
from services.kubepie.gateway.authn import Authenticator, NotAuthenticated, Refused, Unavailable
from services.kubepie.gateway.links import LinkRefused, Probe, ShareLink, ShareLinks
from services.kubepie.gateway.login import PREFIX
from services.kubepie.gateway.pages import SignedIn, copy_button, error_page, nav, page
from services.kubepie.gateway.sessions import Sessions

DAY = 86400.0


class LinksPage:
    def __init__(self, links: ShareLinks, sessions: Sessions, authenticator: Authenticator,
                 probe: Probe, public_url: str) -> None:
        self._links = links
        self._signed_in = SignedIn(sessions, f"{PREFIX}/links")
        self._sessions = sessions
        self._authenticator = authenticator
        self._probe = probe
        self._public_url = public_url.rstrip("/")

    def routes(self) -> list[web.RouteDef]:
        return [web.get(f"{PREFIX}/links", self.show),
                web.post(f"{PREFIX}/links", self.create),
                web.post(f"{PREFIX}/links/revoke", self.revoke),
                web.get(f"{PREFIX}/api/links", self.api_list),
                web.post(f"{PREFIX}/api/links", self.api_create),
                web.delete(f"{PREFIX}/api/links/{{link_id}}", self.api_revoke)]

    def url(self, link: ShareLink, token: str) -> str:
        return self._public_url + link.prefix(token)

    # -- the page -------------------------------------------------------------------------------

    async def show(self, request: web.Request) -> web.StreamResponse:
        identity, session_id = self._signed_in.session(request)
        return await self._render(identity, session_id)

    async def create(self, request: web.Request) -> web.StreamResponse:
        identity, session_id = self._signed_in.session(request)
        form = await self._signed_in.form(request, session_id)
        try:
            link, token = await self._make(identity, form)
        except LinkRefused as exc:
            return error_page(400, str(exc))
        return await self._render(identity, session_id, new=(link, token))

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        identity, session_id = self._signed_in.session(request)
        form = await self._signed_in.form(request, session_id)
        if not await self._links.revoke(form.get("link_id", ""), identity.username):
            return error_page(404, "No such link of yours.")
        raise web.HTTPSeeOther(f"{PREFIX}/links")

    async def _make(self, identity: Identity, values: dict[str, Any]) -> tuple[ShareLink, str]:
        try:
            days = float(values.get("days") or 7)
        except (TypeError, ValueError):
            raise LinkRefused("days must be a number") from None
        return await self._links.create(identity, str(values.get("path", "")), days * DAY,
                                        str(values.get("label", "")), self._probe)

    async def _render(self, identity: Identity, session_id: str,
                      new: tuple[ShareLink, str] | None = None) -> web.Response:
        csrf = escape(self._sessions.csrf_token(session_id))
        links = await self._links.store.for_user(identity.username)
        body = [nav(f"{PREFIX}/links"),
                f"<p>Signed in as <b>{escape(identity.username)}</b>. A share link gives "
                "anyone who has it read-only access to one folder or file, until it expires "
                "or you revoke it.</p>"]
        if new is not None:
            url = escape(self.url(*new))
            use = (f"wget -r -np -nH --cut-dirs=3 -e robots=off {url}\n"
                   f"rclone copy --webdav-url {url} :webdav: ./here"
                   if new[0].collection else f"curl -O {url}")
            body.append(f"<h2>New link — copy it now, it is not shown again</h2>"
                        f"<p><code class=secret id=link-url>{url}</code>{copy_button('link-url')}"
                        f"</p><pre>{use}</pre>")
        body.append("<h2>Your share links</h2>")
        now = time.time()
        if links:
            rows = "".join(_row(link, csrf, now) for link in links)
            body.append("<table id=links><tr><th>Path<th>Label<th>Expires<th>Uses<th></tr>"
                        f"{rows}</table>")
        else:
            body.append("<p>None yet.</p>")
        longest = int(self._links.max_lifetime // DAY)
        body.append(
            f"<h2>New link</h2><form method=post action='{PREFIX}/links'>"
            f"<input type=hidden name=csrf value='{csrf}'>"
            "<label>Folder or file <input name=path required placeholder='/home/results'>"
            "</label> <label>Label <input name=label maxlength=80></label> "
            f"<label>Valid for <input name=days type=number min=1 max={longest} value=7> "
            f"days (at most {longest})</label> <button>Create</button></form>")
        return page("kubepie share links", "".join(body))

    # -- the API --------------------------------------------------------------------------------

    async def _api_identity(self, request: web.Request) -> Identity:
        if "Authorization" not in request.headers:
            raise _json_error(401, "send a bearer token or an access key")
        try:
            identity, _ = await self._authenticator.identify(request)
        except NotAuthenticated as exc:
            raise _json_error(401, str(exc)) from None
        except Refused as exc:
            raise _json_error(403, str(exc)) from None
        except Unavailable as exc:
            raise _json_error(503, str(exc)) from None
        return identity

    async def api_list(self, request: web.Request) -> web.Response:
        identity = await self._api_identity(request)
        links = await self._links.store.for_user(identity.username)
        return web.json_response({"links": [_describe(link) for link in links]},
                                 headers={"Cache-Control": "no-store"})

    async def api_create(self, request: web.Request) -> web.Response:
        identity = await self._api_identity(request)
        if request.content_type == "application/json":
            try:
                values: dict[str, Any] = dict(await request.json())
            except (ValueError, TypeError):
                raise _json_error(400, "the body is not a JSON object") from None
        else:
            values = dict(await request.post())
        try:
            link, token = await self._make(identity, values)
        except LinkRefused as exc:
            raise _json_error(400, str(exc)) from None
        return web.json_response({**_describe(link), "url": self.url(link, token)},
                                 status=201, headers={"Cache-Control": "no-store"})

    async def api_revoke(self, request: web.Request) -> web.Response:
        identity = await self._api_identity(request)
        if not await self._links.revoke(request.match_info["link_id"], identity.username):
            raise _json_error(404, "no such link of yours")
        return web.Response(status=204)


def _describe(link: ShareLink) -> dict[str, Any]:
    return {"id": link.link_id, "path": link.path, "label": link.label,
            "folder": link.collection, "created": int(link.created),
            "expires": int(link.expires), "uses": link.uses}


ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
    404: web.HTTPNotFound, 503: web.HTTPServiceUnavailable}


def _json_error(status: int, message: str) -> web.HTTPException:
    return ERRORS[status](text=json.dumps({"error": message}), content_type="application/json")


def _row(link: ShareLink, csrf: str, now: float) -> str:
    state = "expired" if link.expired(now) else time.strftime("%Y-%m-%d %H:%M UTC",
                                                               time.gmtime(link.expires))
    return (f"<tr><td><code>{escape(link.path)}</code><td>{escape(link.label)}<td>{state}"
            f"<td>{link.uses}<td><form method=post action='{PREFIX}/links/revoke'>"
            f"<input type=hidden name=csrf value='{csrf}'>"
            f"<input type=hidden name=link_id value='{escape(link.link_id)}'>"
            "<button>Revoke</button></form></tr>")
