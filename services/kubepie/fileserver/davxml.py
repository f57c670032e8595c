"""WebDAV XML in and out.

Request bodies are parsed by defusedxml with DTDs refused outright, so entity bombs and external
entities never expand; their size is capped before parsing (see ``read_xml_body``). Responses are
written as text, because a Depth 1 PROPFIND of 10,000 files is streamed piece by piece.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

DAV = "DAV:"
XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'
MULTISTATUS_OPEN = XML_HEAD + '<D:multistatus xmlns:D="DAV:">\n'
MULTISTATUS_CLOSE = "</D:multistatus>\n"

REASONS = {200: "OK", 201: "Created", 204: "No Content", 403: "Forbidden", 404: "Not Found",
           409: "Conflict", 412: "Precondition Failed", 423: "Locked",
           424: "Failed Dependency", 507: "Insufficient Storage"}
_STATUS_LINES = {code: f"<D:status>HTTP/1.1 {code} {reason}</D:status>"
                 for code, reason in REASONS.items()}


class BadXml(ValueError):
    """The body is not well-formed XML, uses DTDs/entities, or is not the expected element."""


def qname(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}"


def split_qname(name: str) -> tuple[str, str]:
    if name.startswith("{"):
        namespace, _, local = name[1:].partition("}")
        return namespace, local
    return "", name


def parse(body: bytes, root: str) -> ET.Element:
    """Parse ``body`` (no DTD, no entities) and check its root element is DAV:``root``."""
    try:
        element: ET.Element = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True,
                                                forbid_external=True)
    except (DefusedXmlException, ValueError) as exc:
        raise BadXml(f"refused XML: {type(exc).__name__}") from None
    except ET.ParseError as exc:
        raise BadXml(f"malformed XML: {exc}") from None
    if element.tag != qname(DAV, root):
        raise BadXml(f"expected a DAV:{root} element")
    return element


@dataclass
class PropfindRequest:
    kind: Literal["allprop", "propname", "prop"] = "allprop"
    names: list[str] = field(default_factory=list)  # Clark names for "prop", "include"


def parse_propfind(body: bytes) -> PropfindRequest:
    if not body.strip():
        return PropfindRequest()
    root = parse(body, "propfind")
    request = PropfindRequest()
    chosen = [child for child in root if child.tag in
              (qname(DAV, "allprop"), qname(DAV, "propname"), qname(DAV, "prop"))]
    if len(chosen) != 1:
        raise BadXml("propfind needs exactly one of allprop, propname, prop")
    request.kind = split_qname(chosen[0].tag)[1]  # type: ignore[assignment]
    if request.kind == "prop":
        request.names = [child.tag for child in chosen[0]]
    for child in root:
        if child.tag == qname(DAV, "include"):
            request.names.extend(item.tag for item in child)
    return request


@dataclass
class PropertyUpdate:
    operation: Literal["set", "remove"]
    element: ET.Element


def parse_propertyupdate(body: bytes) -> list[PropertyUpdate]:
    root = parse(body, "propertyupdate")
    updates: list[PropertyUpdate] = []
    for action in root:
        if action.tag not in (qname(DAV, "set"), qname(DAV, "remove")):
            continue
        operation = split_qname(action.tag)[1]
        for prop in action:
            if prop.tag != qname(DAV, "prop"):
                continue
            updates.extend(PropertyUpdate(operation, element)  # type: ignore[arg-type]
                           for element in prop)
    if not updates:
        raise BadXml("propertyupdate holds no property to set or remove")
    return updates


@dataclass
class LockRequest:
    exclusive: bool
    owner: str | None  # the DAV:owner element, serialized, given back in lockdiscovery


def parse_lockinfo(body: bytes) -> LockRequest:
    root = parse(body, "lockinfo")
    scope = root.find(qname(DAV, "lockscope"))
    kind = root.find(qname(DAV, "locktype"))
    if scope is None or len(scope) != 1 or kind is None or kind.find(qname(DAV, "write")) is None:
        raise BadXml("lockinfo needs a lockscope and a write locktype")
    exclusive = scope[0].tag == qname(DAV, "exclusive")
    if not exclusive and scope[0].tag != qname(DAV, "shared"):
        raise BadXml("lockscope must be exclusive or shared")
    owner = root.find(qname(DAV, "owner"))
    return LockRequest(exclusive, serialize(owner) if owner is not None else None)


def serialize(element: ET.Element) -> str:
    """An element with its own namespace declarations, ready to embed anywhere."""
    element.tail = None
    return ET.tostring(element, encoding="unicode")


def empty_element(name: str) -> str:
    namespace, local = split_qname(name)
    if namespace == DAV:
        return f"<D:{local}/>"
    if not namespace:
        return f'<{local} xmlns=""/>'
    return f"<R:{local} xmlns:R={quoteattr(namespace)}/>"


def element(name: str, inner: str) -> str:
    namespace, local = split_qname(name)
    if namespace == DAV:
        return f"<D:{local}>{inner}</D:{local}>"
    return f"<R:{local} xmlns:R={quoteattr(namespace)}>{inner}</R:{local}>"


def text(value: str) -> str:
    """Element text: ``escape`` where there is anything to escape (most names and every
    percent-encoded href have nothing), which a listing of thousands notices."""
    return escape(value) if "&" in value or "<" in value or ">" in value else value


def status_line(code: int) -> str:
    return _STATUS_LINES.get(code) or f"<D:status>HTTP/1.1 {code} </D:status>"


def response(href: str, propstats: dict[int, list[str]]) -> str:
    """One ``<D:response>`` with a propstat per status code."""
    parts = [f"<D:response><D:href>{text(href)}</D:href>"]
    for code, props in propstats.items():
        if props:
            parts.append(f"<D:propstat><D:prop>{''.join(props)}</D:prop>{status_line(code)}"
                         "</D:propstat>")
    parts.append("</D:response>\n")
    return "".join(parts)


def status_response(href: str, code: int, condition: str | None = None) -> str:
    error = f"<D:error><D:{condition}/></D:error>" if condition else ""
    return f"<D:response><D:href>{escape(href)}</D:href>{status_line(code)}{error}</D:response>\n"


def error_body(condition: str, href: str | None = None) -> str:
    """A precondition/postcondition body (RFC 4918 §16), naming ``href`` when given."""
    inner = f"<D:{condition}><D:href>{escape(href)}</D:href></D:{condition}>" if href \
        else f"<D:{condition}/>"
    return f'{XML_HEAD}<D:error xmlns:D="DAV:">{inner}</D:error>\n'
