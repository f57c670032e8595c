"""The plain HTML page a browser gets for a folder: links, sizes, dates, nothing to execute."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from services.kubepie.fileserver.fsops import Entry
from services.kubepie.fileserver.props import iso_date

# No script may run on these pages, and nothing is loaded from elsewhere.
LISTING_CSP = "default-src 'none'; style-src 'unsafe-inline'"

_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
          "table{border-collapse:collapse}td,th{padding:.2em 1em;text-align:left}"
          "td.size{text-align:right;font-variant-numeric:tabular-nums}"
          "tr:nth-child(even){background:#f4f4f4}a{text-decoration:none}")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def render(href: str, entries: list[Entry], virtual_names: list[str] | None = None) -> str:
    """The page for the folder at ``href`` (ends with ``/``)."""
    title = escape(href)
    rows = []
    if href != "/":
        rows.append('<tr><td><a href="../">../</a></td><td></td><td></td></tr>')
    for name in virtual_names or []:
        link = quote(name, safe="") + "/"
        rows.append(f'<tr><td><a href="{link}">{escape(name)}/</a></td><td></td><td></td></tr>')
    for entry in sorted(entries, key=lambda e: (not e.collection, e.name.lower())):
        link = quote(entry.name, safe="") + ("/" if entry.collection else "")
        shown = escape(entry.name) + ("/" if entry.collection else "")
        size = "" if entry.collection else human_size(entry.st.st_size)
        rows.append(f'<tr><td><a href="{link}">{shown}</a></td><td class="size">{size}</td>'
                    f"<td>{iso_date(entry.st.st_mtime)}</td></tr>")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Index of {title}</title><style>{_STYLE}</style></head><body>"
            f"<h1>Index of {title}</h1><table><thead><tr><th>Name</th><th>Size</th>"
            f"<th>Modified (UTC)</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            "</body></html>\n")
