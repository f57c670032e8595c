"""Fuzzing the parsers that face the network, with a fixed budget per parser.

Each parser gets a few thousand inputs (hypothesis, shaped like the real input: If headers
from their grammar's pieces, paths from URL pieces, XML from DAV elements, oidc-agent frames
from their framing) and must either succeed or fail with its own documented error — never
with anything else, which would be a 500, a dropped connection or a crash. What a run found is
kept below as regular tests (``FOUND``). ``--hypothesis-show-statistics`` prints how many
inputs each target tried.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

import nacl.bindings as sodium
import nacl.exceptions
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.kubepie.fileserver.davxml import (
    BadXml,
    parse_lockinfo,
    parse_propertyupdate,
    parse_propfind,
)
from services.kubepie.fileserver.ifheader import BadIfHeader, parse_if
from services.kubepie.fileserver.mounts import BadPath, decode_path
from services.kubepie.gateway.bearer import TokenRejected
from services.kubepie.gateway.proxy import BadDestination, rewrite_destination
from services.kubepie.gateway.token_kind import not_an_access_token
from services.tokenhelper.agent_socket import AgentSocket, ProtocolError, encrypt

BUDGET = settings(max_examples=1500, deadline=None, derandomize=False,
                  suppress_health_check=[HealthCheck.too_slow])

# -- pieces the inputs are made of ---------------------------------------------------------

URL_PIECES = st.sampled_from([
    "/", "//", ".", "..", "%2e", "%2E%2e", "%2f", "%5c", "%00", "%c0%ae", "%ff", "%", "%z",
    "#", "?", ";", "a", "home", "caf%C3%A9", "%e2%80%ae", "\\", ":", "@", "[", "]", "::1",
    "http://", "https://", "127.0.0.1", ":8080", "evil.example", " ", "\t", "%20", "~",
])
IF_PIECES = st.sampled_from([
    "(", ")", "<", ">", "[", "]", "Not", " ", "\t", '"etag"', 'W/"w"', "<urn:uuid:1-2>",
    "<opaquelocktoken:x>", "<DAV:no-lock>", "<http://h/p>", "</home/a>", "\\", '"', ",", "a",
])
XML_PIECES = st.sampled_from([
    '<?xml version="1.0"?>', '<D:propfind xmlns:D="DAV:">', "</D:propfind>", "<D:prop>",
    "</D:prop>", "<D:allprop/>", "<D:propname/>", "<D:include/>", '<D:propertyupdate '
    'xmlns:D="DAV:">', "</D:propertyupdate>", "<D:set>", "</D:set>", "<D:remove>",
    "</D:remove>", '<D:lockinfo xmlns:D="DAV:">', "</D:lockinfo>", "<D:lockscope>",
    "</D:lockscope>", "<D:exclusive/>", "<D:shared/>", "<D:locktype><D:write/></D:locktype>",
    "<D:owner>", "</D:owner>", '<Z:x xmlns:Z="urn:z">v</Z:x>', "<x/>", "<D:displayname/>",
    '<!DOCTYPE x [<!ENTITY e "e">]>', "&e;", "<![CDATA[c]]>", "<!-- c -->", "\x00", "é",
    '<D:href>/home/a</D:href>', "<", ">", "&", "xmlns", '"',
])


def joined(pieces: st.SearchStrategy[str], extra: st.SearchStrategy[str] | None = None
           ) -> st.SearchStrategy[str]:
    parts = st.one_of(pieces, extra) if extra is not None else pieces
    return st.lists(parts, max_size=24).map("".join)


# -- the targets -----------------------------------------------------------------------------

@BUDGET
@given(joined(IF_PIECES, st.text(max_size=4)))
def test_if_header(header: str) -> None:
    with contextlib.suppress(BadIfHeader):
        parse_if(header)


@BUDGET
@given(joined(URL_PIECES, st.text(max_size=3)))
def test_if_header_tagged_resources_as_used(resource: str) -> None:
    """A tagged list names a resource by URL; the file server looks it up (RFC 4918 §10.4)."""
    from aiohttp import web

    header = f"<{resource}> (<urn:uuid:x>)"
    with contextlib.suppress(BadIfHeader, BadPath, web.HTTPException):
        _file_server_if(header)


@BUDGET
@given(joined(URL_PIECES, st.text(max_size=3)))
def test_request_paths(raw: str) -> None:
    try:
        segments = decode_path(raw)
    except BadPath:
        return
    assert not {".", ".."} & set(segments)
    assert all("/" not in s and "\0" not in s for s in segments)


@BUDGET
@given(joined(URL_PIECES, st.text(max_size=3)))
def test_destination_at_the_gateway(value: str) -> None:
    try:
        path = rewrite_destination(value, {"files.example.org", "127.0.0.1:8780"})
    except BadDestination as exc:
        assert exc.status in (400, 502)
        return
    assert path.startswith("/")


@BUDGET
@given(joined(URL_PIECES, st.text(max_size=3)))
def test_destination_at_the_file_server(value: str) -> None:
    """The file server's Destination check, as a request reaches it."""
    from aiohttp import web

    with contextlib.suppress(web.HTTPException, BadPath):
        _file_server_destination(value)


def _file_server_destination(value: str) -> None:
    from aiohttp.test_utils import make_mocked_request

    from tests.fuzz_helpers import file_server_context

    request = make_mocked_request("COPY", "/home/a", headers={"Destination": value,
                                                              "Host": "127.0.0.1:8770"})
    file_server_context().destination(request)


def _file_server_if(header: str) -> None:
    from aiohttp.test_utils import make_mocked_request

    from tests.fuzz_helpers import file_server_context

    dav = file_server_context()
    request = make_mocked_request("PUT", "/home/a", headers={"If": header})
    target = dav.mounts.locate(("home", "a"))
    assert target is not None
    asyncio.run(dav.check_if(request, target, parse_if(header)))


@BUDGET
@given(joined(XML_PIECES, st.text(max_size=3)).map(str.encode))
def test_dav_request_bodies(body: bytes) -> None:
    for parser in (parse_propfind, parse_propertyupdate, parse_lockinfo):
        with contextlib.suppress(BadXml):
            parser(body)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() |
                           st.text(max_size=8), lambda inner: st.lists(inner, max_size=3) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)
AGENT_FIELDS = st.fixed_dictionaries({}, optional={
    "request": st.sampled_from(["access_token", "add", "", "gen"]) | JSON_VALUES,
    "account": JSON_VALUES, "min_valid_period": JSON_VALUES, "application_hint": JSON_VALUES,
    "scope": JSON_VALUES, "audience": JSON_VALUES})


class _Writer:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


class _Broker:
    async def token(self, min_valid: float | None = None, narrowing: Any = None) -> Any:
        from services.tokenhelper.tokens import AccessToken
        return AccessToken("at", 2_000_000_000.0)


AGENT_ERRORS = (ProtocolError, nacl.exceptions.CryptoError, ValueError)


def _converse(data: bytes) -> bytes:
    async def run() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        writer = _Writer()
        socket = AgentSocket(_Broker(), "https://issuer.example")  # type: ignore[arg-type]
        with contextlib.suppress(*AGENT_ERRORS):
            await socket._converse(reader, writer)  # type: ignore[arg-type]
        return writer.data
    return asyncio.run(run())


@BUDGET
@given(st.one_of(AGENT_FIELDS.map(json.dumps), JSON_VALUES.map(json.dumps),
                 st.binary(max_size=200)).map(lambda v: v if isinstance(v, bytes)
                                              else v.encode()))
def test_oidc_agent_socket_plain_and_garbage(data: bytes) -> None:
    answer = _converse(data)
    if answer:
        assert isinstance(json.loads(answer), dict)


@BUDGET
@given(AGENT_FIELDS, st.sampled_from(["ok", "length", "nonce", "cipher", "split"]))
def test_oidc_agent_socket_encrypted_frames(request: dict[str, Any], damage: str) -> None:
    """Frames as liboidc-agent builds them, whole or damaged in one part."""
    client_pk, client_sk = sodium.crypto_box_keypair()
    server_pk, _ = sodium.crypto_box_keypair()  # the real one is made per connection
    frame = encrypt(json.dumps(request), server_pk, client_sk)
    length, nonce, cipher = frame.split(b":")
    frame = {"ok": frame, "length": b"-1:" + nonce + b":" + cipher,
             "nonce": length + b":" + nonce[:-4] + b":" + cipher,
             "cipher": length + b":" + nonce + b":" + cipher[::-1],
             "split": length + nonce + cipher}[damage]
    _converse(base64.b64encode(client_pk) + frame)


@BUDGET
@given(st.dictionaries(st.sampled_from(["typ", "alg", "kid", "cty", "x"]), JSON_VALUES,
                       max_size=4),
       st.dictionaries(st.sampled_from(["typ", "nonce", "at_hash", "scope", "scp",
                                        "client_id", "aud", "sub"]), JSON_VALUES, max_size=5))
def test_jwt_kind_check(header: dict[str, Any], claims: dict[str, Any]) -> None:
    for check in ("auto", "rfc9068", "off"):
        result = not_an_access_token(header, claims, check)  # type: ignore[arg-type]
        assert result is None or isinstance(result, str)


HEADERS = st.fixed_dictionaries({}, optional={
    "alg": st.sampled_from(["RS256", "ES256", "none", "HS256", "RS1", ""]) | JSON_VALUES,
    "kid": st.sampled_from(["k1", "k2", ""]) | JSON_VALUES,
    "typ": st.sampled_from(["at+jwt", "JWT", "dpop+jwt"]) | JSON_VALUES,
    "crit": JSON_VALUES, "jku": JSON_VALUES, "x5u": JSON_VALUES, "b64": JSON_VALUES,
    "enc": JSON_VALUES})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@BUDGET
@given(HEADERS.map(json.dumps) | st.text(max_size=30), JSON_VALUES.map(json.dumps),
       st.binary(max_size=64))
def test_jwt_headers_at_the_verifier(header: str, payload: str, signature: bytes) -> None:
    """A JWT with any header (alg none, an unknown kid, crit, jku …) and any payload, not
    signed by the provider: refused with TokenRejected, nothing else."""
    from tests.fuzz_helpers import verifier_with_one_key

    token = f"{_b64(header.encode())}.{_b64(payload.encode())}.{_b64(signature)}"
    with pytest.raises(TokenRejected):
        asyncio.run(verifier_with_one_key().verify(token))


# -- what the fuzzing found, kept as plain tests ---------------------------------------------

FOUND_DESTINATIONS = ["http://[::1/home/a", "http://[evil/x", "https://]/"]


@pytest.mark.parametrize("value", FOUND_DESTINATIONS)
def test_found_a_bracket_in_a_url_header_was_a_500(value: str) -> None:
    """urlsplit raises ValueError on an unclosed IPv6 bracket: in a Destination or an If
    header's tagged resource that reached the client as a 500 (file server) or an unhandled
    error (gateway); now it is a 400 on both."""
    with pytest.raises(BadDestination) as raised:
        rewrite_destination(value, {"files.example.org"})
    assert raised.value.status == 400
    with pytest.raises(BadPath, match="not a URL"):  # the file server answers BadPath with 400
        _file_server_destination(value)
    with pytest.raises(BadPath, match="not a URL"):
        _file_server_if(f"<{value}> (<urn:uuid:x>)")


FOUND_JWT_HEADERS = ['{"alg": "RS256", "crit": [[]]}', '{"alg": "RS256", "crit": [null]}',
                     '{"alg": "RS256", "crit": null}', '{"alg": "RS256", "kid": ["k1"]}',
                     '{"alg": ["RS256"]}']


@pytest.mark.parametrize("header", FOUND_JWT_HEADERS)
def test_found_malformed_jwt_headers_crashed_the_verifier(header: str) -> None:
    """joserfc raised TypeError (not JoseError) on these ``crit`` shapes: a bearer token
    like this was a 500 at the gateway; now it is refused like any other bad token."""
    from tests.fuzz_helpers import verifier_with_one_key

    token = f"{_b64(header.encode())}.{_b64(b'null')}.{_b64(b'')}"
    with pytest.raises(TokenRejected):
        asyncio.run(verifier_with_one_key().verify(token))
