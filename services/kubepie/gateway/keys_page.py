"""``/_kubepie/keys``: list, create and revoke one's access keys (after a browser login).

Forms carry a CSRF token bound to the session, and the cookie is SameSite=Lax; the secret of
a new key appears once, on the answer to the POST that created it (no-store).
"""

from __future__ import annotations

import time
from html import escape

from aiohttp import web

from services.identity.claims import Identity
from services.kubepie.gateway.accesskeys import AccessKey, AccessKeys
from services.kubepie.gateway.login import PREFIX
from services.kubepie.gateway.pages import SignedIn, copy_button, error_page, nav, page
from services.kubepie.gateway.sessions import Sessions

LIFETIMES = {"1": 86400.0, "30": 30 * 86400.0, "90": 90 * 86400.0, "365": 365 * 86400.0}


class KeysPage:
    def __init__(self, keys: AccessKeys, sessions: Sessions, public_url: str) -> None:
        self._keys = keys
        self._sessions = sessions
        self._signed_in = SignedIn(sessions, f"{PREFIX}/keys")
        self._public_url = public_url.rstrip("/")

    def routes(self) -> list[web.RouteDef]:
        return [web.get(f"{PREFIX}/keys", self.show), web.post(f"{PREFIX}/keys", self.create),
                web.post(f"{PREFIX}/keys/revoke", self.revoke)]

    def _session(self, request: web.Request) -> tuple[Identity, str]:
        return self._signed_in.session(request)

    async def _form(self, request: web.Request, session_id: str) -> dict[str, str]:
        return await self._signed_in.form(request, session_id)

    async def show(self, request: web.Request) -> web.StreamResponse:
        identity, session_id = self._session(request)
        return await self._render(identity, session_id)

    async def create(self, request: web.Request) -> web.StreamResponse:
        identity, session_id = self._session(request)
        form = await self._form(request, session_id)
        lifetime = LIFETIMES.get(form.get("days", ""))
        try:
            key, secret = await self._keys.create(identity, form.get("label", ""), lifetime)
        except ValueError as exc:
            return error_page(409, str(exc))
        return await self._render(identity, session_id, new=(key, secret))

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        identity, session_id = self._session(request)
        form = await self._form(request, session_id)
        if not await self._keys.revoke(form.get("key_id", ""), identity.username):
            return error_page(404, "No such key of yours.")
        raise web.HTTPSeeOther(f"{PREFIX}/keys")

    async def _render(self, identity: Identity, session_id: str,
                      new: tuple[AccessKey, str] | None = None) -> web.Response:
        csrf = escape(self._sessions.csrf_token(session_id))
        keys = await self._keys.store.for_user(identity.username)
        body = [nav(f"{PREFIX}/keys"),
                f"<p>Signed in as <b>{escape(identity.username)}</b> (uid {identity.uid}, "
                f"gid {identity.gid}{_groups(identity)}).</p>"]
        if new is not None:
            body.append(self._new_key(*new))
        body.append("<h2>Your access keys</h2>")
        if keys:
            rows = "".join(_row(k, csrf) for k in keys)
            body.append("<table><tr><th>Key id<th>Label<th>Created<th>Expires<th></tr>"
                        f"{rows}</table>")
        else:
            body.append("<p>None yet.</p>")
        options = "".join(f"<option value={d}{' selected' if d == '30' else ''}>{d} "
                          f"day{'s' if d != '1' else ''}</option>" for d in LIFETIMES)
        body.append(
            f"<h2>New key</h2><form method=post action='{PREFIX}/keys'>"
            f"<input type=hidden name=csrf value='{csrf}'>"
            "<label>Label <input name=label maxlength=80 placeholder='laptop rclone'></label> "
            f"<label>Valid for <select name=days>{options}<option value=''>the longest "
            "allowed</option></select></label> <button>Create</button></form>"
            "<h2>Share a folder or file</h2><p>A read-only link that works without a login "
            f"until it expires; list and revoke them under <a href='{PREFIX}/links'>Share "
            f"links</a>.</p><form method=post action='{PREFIX}/links'>"
            f"<input type=hidden name=csrf value='{csrf}'>"
            "<label>Folder or file <input name=path required placeholder='/home/results'>"
            "</label> <label>Valid for <input name=days type=number min=1 value=7> days"
            "</label> <button>Share</button></form>"
            f"<form method=post action='{PREFIX}/logout'><p><button>Sign out</button></p></form>")
        return page("kubepie access keys", "".join(body))

    def _new_key(self, key: AccessKey, secret: str) -> str:
        url = escape(self._public_url)
        return (
            "<h2>New key — copy the secret now, it is not shown again</h2>"
            f"<p>Access key id: <code class=secret id=key-id>{escape(key.key_id)}</code>"
            f"{copy_button('key-id')}<br>"
            f"Secret: <code class=secret id=key-secret>{escape(secret)}</code>"
            f"{copy_button('key-secret')}</p>"
            "<p>Use them as user name and password with any WebDAV client, e.g.:</p>"
            f"<pre>rclone config create kubepie webdav url={url}/ vendor=other "
            f"user={escape(key.key_id)} pass=$(rclone obscure '{escape(secret)}')\n"
            "rclone ls kubepie:home/\n"
            f"cadaver {url}/home/\n"
            f"curl -u {escape(key.key_id)}:… {url}/home/</pre>")


def _row(key: AccessKey, csrf: str) -> str:
    expires = _date(key.expires) if key.expires else "never"
    return (f"<tr><td><code>{escape(key.key_id)}</code><td>{escape(key.label)}"
            f"<td>{_date(key.created)}<td>{expires}<td><form method=post "
            f"action='{PREFIX}/keys/revoke'><input type=hidden name=csrf value='{csrf}'>"
            f"<input type=hidden name=key_id value='{escape(key.key_id)}'>"
            "<button>Revoke</button></form></tr>")


def _date(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def _groups(identity: Identity) -> str:
    if not identity.groups:
        return ""
    return ", groups " + ", ".join(escape(g) for g in identity.groups)
