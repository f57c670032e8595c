"""The few HTML pages the gateway serves itself (errors, access keys, share links).

One script only: the "Copy" buttons next to a new secret or link, allowed by its hash in the
Content-Security-Policy (nothing else may run; the pages work without it).
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

from aiohttp import web

from services.identity.claims import Identity
from services.kubepie.gateway.sessions import Sessions

LOGIN_PATH = "/_kubepie/login"

COPY_SCRIPT = (
    "document.addEventListener('click',function(e){"
    "var b=e.target.closest('button[data-copy]');if(!b)return;"
    "var t=document.getElementById(b.dataset.copy).textContent;"
    "navigator.clipboard.writeText(t).then(function(){b.textContent='Copied'},"
    "function(){b.textContent='Select it and copy by hand'})})")
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(COPY_SCRIPT.encode()).digest()).decode()
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; " \
      f"frame-ancestors 'none'; base-uri 'none'; script-src 'sha256-{_SCRIPT_HASH}'"
STYLE = ("body{font:15px/1.5 system-ui,sans-serif;max-width:52em;margin:2em auto;"
         "padding:0 1em}table{border-collapse:collapse}td,th{padding:.3em .8em;"
         "border-bottom:1px solid #ddd;text-align:left}code,pre{background:#f4f4f4;"
         "padding:.1em .3em}pre{padding:.6em;white-space:pre-wrap;word-break:break-all}"
         ".secret{font-size:1.1em}")


def page(title: str, body: str, status: int = 200) -> web.Response:
    html = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(title)}</title>"
            f"<meta name=viewport content='width=device-width'><style>{STYLE}</style>"
            f"<h1>{escape(title)}</h1>{body}<script>{COPY_SCRIPT}</script></html>")
    return web.Response(text=html, status=status, content_type="text/html", headers={
        "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def copy_button(element_id: str) -> str:
    """A button that puts the text of the element with this id on the clipboard."""
    return f" <button type=button data-copy='{escape(element_id)}'>Copy</button>"


def error_page(status: int, message: str) -> web.Response:
    return page("kubepie", f"<p>{escape(message)}</p>", status)


class SignedIn:
    """The pages of a signed-in user: the session (else the login), forms with CSRF."""

    def __init__(self, sessions: Sessions, page_path: str) -> None:
        self.sessions = sessions
        self.page_path = page_path

    def session(self, request: web.Request) -> tuple[Identity, str]:
        session = self.sessions.identity(request)
        if session is None:
            raise web.HTTPFound(f"{LOGIN_PATH}?next={self.page_path}")
        return session

    async def form(self, request: web.Request, session_id: str) -> dict[str, str]:
        form = await request.post()
        if not self.sessions.csrf_ok(session_id, str(form.get("csrf", ""))):
            raise web.HTTPForbidden(text="the form is stale; reload the page\n")
        return {k: str(v) for k, v in form.items()}


def nav(current: str) -> str:
    """Links between the signed-in pages."""
    items = [("/_kubepie/keys", "Access keys"), ("/_kubepie/links", "Share links"),
             ("/", "Files")]
    return "<p>" + " · ".join(f"<b>{escape(t)}</b>" if p == current else
                               f"<a href='{p}'>{escape(t)}</a>" for p, t in items) + "</p>"
