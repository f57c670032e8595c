"""The few HTML pages the gateway serves itself (errors, access keys): no scripts at all."""

from __future__ import annotations

from html import escape

from aiohttp import web

CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; " \
      "frame-ancestors 'none'; base-uri 'none'"
STYLE = ("body{font:15px/1.5 system-ui,sans-serif;max-width:52em;margin:2em auto;"
         "padding:0 1em}table{border-collapse:collapse}td,th{padding:.3em .8em;"
         "border-bottom:1px solid #ddd;text-align:left}code,pre{background:#f4f4f4;"
         "padding:.1em .3em}pre{padding:.6em;white-space:pre-wrap;word-break:break-all}"
         ".secret{font-size:1.1em}")


def page(title: str, body: str, status: int = 200) -> web.Response:
    html = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(title)}</title>"
            f"<meta name=viewport content='width=device-width'><style>{STYLE}</style>"
            f"<h1>{escape(title)}</h1>{body}</html>")
    return web.Response(text=html, status=status, content_type="text/html", headers={
        "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def error_page(status: int, message: str) -> web.Response:
    return page("kubepie", f"<p>{escape(message)}</p>", status)
