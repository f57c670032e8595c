"""Properties: live ones computed from ``stat``, dead ones kept in extended attributes.

Dead properties (PROPPATCH) live in ``user.dav.<hash>`` extended attributes of the file itself, so
they move with the file on MOVE and rename, are copied on COPY, and vanish with it, with no
database to keep in step. Each attribute holds the property element as XML. A filesystem without
user xattrs (NFSv3) answers PROPPATCH with 507 for each property and a reason.
"""

from __future__ import annotations

import functools
import hashlib
import mimetypes
import os
import xml.etree.ElementTree as ET
from email.utils import formatdate
from time import gmtime, strftime
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET

from services.kubepie.fileserver.davxml import DAV, empty_element, qname, serialize, text

XATTR_PREFIX = "user.dav."

# Live properties: computed, never stored; PROPPATCH on them is 403 (cannot-modify-protected).
CREATIONDATE = qname(DAV, "creationdate")
DISPLAYNAME = qname(DAV, "displayname")
CONTENTLENGTH = qname(DAV, "getcontentlength")
CONTENTTYPE = qname(DAV, "getcontenttype")
ETAG = qname(DAV, "getetag")
LASTMODIFIED = qname(DAV, "getlastmodified")
RESOURCETYPE = qname(DAV, "resourcetype")
SUPPORTEDLOCK = qname(DAV, "supportedlock")
LOCKDISCOVERY = qname(DAV, "lockdiscovery")
QUOTA_AVAILABLE = qname(DAV, "quota-available-bytes")
QUOTA_USED = qname(DAV, "quota-used-bytes")

# What allprop returns (RFC 4918 §9.1: lockdiscovery and supportedlock too; RFC 4331 quota
# properties only when asked for by name).
ALLPROP_LIVE = (RESOURCETYPE, CREATIONDATE, DISPLAYNAME, CONTENTLENGTH, CONTENTTYPE, ETAG,
                LASTMODIFIED, SUPPORTEDLOCK, LOCKDISCOVERY)
PROTECTED = frozenset((*ALLPROP_LIVE, QUOTA_AVAILABLE, QUOTA_USED))

SUPPORTEDLOCK_XML = (
    "<D:supportedlock>"
    "<D:lockentry><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>"
    "</D:lockentry>"
    "<D:lockentry><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype>"
    "</D:lockentry></D:supportedlock>")

mimetypes.init()
FALLBACK_TYPE = "application/octet-stream"


def etag(st: os.stat_result) -> str:
    """A strong validator: changes whenever the content can have changed."""
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def content_type(name: str) -> str:
    return _type_of_suffix(os.path.splitext(name)[1].lower())


@functools.lru_cache(maxsize=1024)
def _type_of_suffix(suffix: str) -> str:
    return mimetypes.guess_type("x" + suffix, strict=False)[0] or FALLBACK_TYPE


def http_date(timestamp: float) -> str:
    return _http_date(int(timestamp))


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


def iso_date(timestamp: float) -> str:
    return _iso_date(int(timestamp))


@functools.lru_cache(maxsize=4096)
def _iso_date(seconds: int) -> str:
    """Cached like ``_http_date``: the files of one listing share a few seconds."""
    return strftime("%Y-%m-%dT%H:%M:%SZ", gmtime(seconds))


def live_properties(name: str, st: os.stat_result | None, *, collection: bool) -> dict[str, str]:
    """The live properties of a resource (``st`` None: a virtual folder), as XML."""
    props = {RESOURCETYPE: "<D:resourcetype><D:collection/></D:resourcetype>" if collection
             else "<D:resourcetype/>",
             DISPLAYNAME: f"<D:displayname>{escape(name)}</D:displayname>",
             SUPPORTEDLOCK: SUPPORTEDLOCK_XML}
    if st is None:
        return props
    props[CREATIONDATE] = f"<D:creationdate>{iso_date(st.st_ctime)}</D:creationdate>"
    props[LASTMODIFIED] = f"<D:getlastmodified>{http_date(st.st_mtime)}</D:getlastmodified>"
    if not collection:
        props[CONTENTLENGTH] = f"<D:getcontentlength>{st.st_size}</D:getcontentlength>"
        props[CONTENTTYPE] = f"<D:getcontenttype>{escape(content_type(name))}</D:getcontenttype>"
        props[ETAG] = f"<D:getetag>{escape(etag(st))}</D:getetag>"
    return props


def allprop_live_xml(name: str, st: os.stat_result, *, collection: bool) -> str:
    """``live_properties(...).values()`` joined, built in one step: a listing renders this for
    every member (allprop, what most clients send), so it skips the dict."""
    if collection:
        return (f"<D:resourcetype><D:collection/></D:resourcetype>"
                f"<D:displayname>{text(name)}</D:displayname>{SUPPORTEDLOCK_XML}"
                f"<D:creationdate>{iso_date(st.st_ctime)}</D:creationdate>"
                f"<D:getlastmodified>{http_date(st.st_mtime)}</D:getlastmodified>")
    # An etag is hex digits, a dash and quotes: nothing to escape in element text.
    return (f"<D:resourcetype/><D:displayname>{text(name)}</D:displayname>"
            f"{SUPPORTEDLOCK_XML}<D:creationdate>{iso_date(st.st_ctime)}</D:creationdate>"
            f"<D:getlastmodified>{http_date(st.st_mtime)}</D:getlastmodified>"
            f"<D:getcontentlength>{st.st_size}</D:getcontentlength>"
            f"<D:getcontenttype>{_type_text(os.path.splitext(name)[1].lower())}"
            f"</D:getcontenttype><D:getetag>{etag(st)}</D:getetag>")


@functools.lru_cache(maxsize=1024)
def _type_text(suffix: str) -> str:
    return escape(_type_of_suffix(suffix))


def quota_properties(path: str) -> dict[str, str]:
    """RFC 4331 quota of the filesystem holding ``path`` (blocking: statvfs)."""
    fs = os.statvfs(path)
    available = fs.f_bavail * fs.f_frsize
    used = (fs.f_blocks - fs.f_bfree) * fs.f_frsize
    return {QUOTA_AVAILABLE: f"<D:quota-available-bytes>{available}</D:quota-available-bytes>",
            QUOTA_USED: f"<D:quota-used-bytes>{used}</D:quota-used-bytes>"}


# -- dead properties ---------------------------------------------------------------------------

def _attribute(name: str) -> str:
    return XATTR_PREFIX + hashlib.sha256(name.encode()).hexdigest()[:40]


def dead_properties(path: str) -> dict[str, str]:
    """Clark name → serialized element, for every dead property of ``path`` (blocking)."""
    try:
        attributes = [a for a in os.listxattr(path) if a.startswith(XATTR_PREFIX)]
    except OSError:
        return {}  # no xattrs on this filesystem, or a special file: no dead properties
    found = {}
    for attribute in attributes:
        try:
            text = os.getxattr(path, attribute)
            element = SafeET.fromstring(text, forbid_dtd=True)
        except (OSError, ET.ParseError, ValueError):
            continue
        found[element.tag] = text.decode()
    return found


def set_dead_property(path: str, element: ET.Element) -> None:
    os.setxattr(path, _attribute(element.tag), serialize(element).encode())


def remove_dead_property(path: str, name: str) -> None:
    try:
        os.removexattr(path, _attribute(name))
    except OSError as exc:
        if exc.errno != 61:  # ENODATA: removing a property that is not there is a success
            raise


def copy_dead_properties(source: str, destination: str) -> None:
    """Copy dead properties along with COPY (``shutil.copyfile`` copies content only)."""
    try:
        attributes = [a for a in os.listxattr(source) if a.startswith(XATTR_PREFIX)]
    except OSError:
        return
    for attribute in attributes:
        try:
            os.setxattr(destination, attribute, os.getxattr(source, attribute))
        except OSError:
            continue


def propname_xml(names: list[str]) -> list[str]:
    return [empty_element(name) for name in names]

