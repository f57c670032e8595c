"""Each aiohttp app in process, through pytest-aiohttp's ``aiohttp_client``: routes, the
answers to bad input and the health verdicts, in milliseconds — the real-process tests keep
what only a process shows (signals, privilege drops, exit codes)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import defusedxml.ElementTree as SafeET
from aiohttp import web
from joserfc.jwk import ECKey
from prometheus_client import CollectorRegistry
from pytest_aiohttp import AiohttpClient

from services.hub.client import HubClient
from services.kubepie.fileserver.app import build_app as fileserver_app
from services.kubepie.fileserver.settings import FileserverSettings
from services.kubepie.webhook.main import build_app as webhook_app
from services.runtime.webapp import make_app
from services.walltime.countdown import Countdown, utcnow
from services.walltime.settings import SidecarSettings
from services.walltime.sidecar import WalltimeSidecar
from services.walltime.sidecar import add_routes as add_walltime_routes


async def test_healthz_says_ok_or_503_with_what_an_operator_should_know(
        aiohttp_client: AiohttpClient) -> None:
    state = {"ok": True}
    app = make_app(CollectorRegistry(), healthy=lambda: state["ok"],
                   details=lambda: {"problem": None if state["ok"] else "no containers found"})
    client = await aiohttp_client(app)
    response = await client.get("/healthz")
    assert response.status == 200 and await response.json() == {"ok": True, "problem": None}
    state["ok"] = False
    response = await client.get("/healthz")
    assert response.status == 503
    assert await response.json() == {"ok": False, "problem": "no containers found"}
    metrics = await client.get("/metrics")
    assert metrics.status == 200 and metrics.content_type == "text/plain"
    assert (await client.post("/healthz")).status == 405


async def test_the_webhook_answers_garbage_with_400_and_reviews_with_a_verdict(
        aiohttp_client: AiohttpClient) -> None:
    registry = CollectorRegistry()
    client = await aiohttp_client(webhook_app(ECKey.generate_key("P-256"), registry))
    for body in (b"not json", b"[]", b'{"kind": "AdmissionReview"}',
                 b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}'):
        response = await client.post("/mutate", data=body)
        assert response.status == 400, body
        assert (await response.json())["error"].startswith("not an AdmissionReview")
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "e911857d-c318-11e8-bbad-025000000001", "operation": "CREATE",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "object": {"metadata": {"name": "kubepie-alice"}, "spec": {"containers": []}}}}
    response = await client.post("/mutate", json=review)
    assert response.status == 200
    answer = (await response.json())["response"]
    assert answer["uid"] == review["request"]["uid"] and answer["allowed"] is False
    assert "identity" in answer["status"]["message"]
    metrics = await (await client.get("/metrics")).text()
    assert 'jupyterhub_sidecars_kubepie_webhook_reviews_total{allowed="false"} 1.0' in metrics


async def test_an_oversized_review_is_refused_before_it_is_read(
        aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(webhook_app(ECKey.generate_key("P-256"),
                                              CollectorRegistry()))
    response = await client.post("/mutate", data=b"x" * (5 * 1024 * 1024))
    assert response.status == 413


async def test_a_service_route_sits_beside_healthz_and_metrics(
        aiohttp_client: AiohttpClient) -> None:
    app = make_app(CollectorRegistry())

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hi")

    app.router.add_get("/hello", hello)
    client = await aiohttp_client(app)
    assert await (await client.get("/hello")).text() == "hi"
    assert (await client.get("/nothing")).status == 404


async def test_the_file_server_answers_only_its_gateway_and_maps_errors_to_webdav_codes(
        aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """Routes, the gateway's bearer check and the error mapping of the file server's app;
    serving as the user's uid is the real-process tests' (test_fileserver_security.py)."""
    (tmp_path / "home").mkdir()
    settings = FileserverSettings(mounts=f"home={tmp_path / 'home'}", access_token="gw-token")
    registry = CollectorRegistry()
    client = await aiohttp_client(fileserver_app(settings, registry))
    gateway = {"Authorization": "Bearer gw-token"}
    assert (await client.get("/healthz")).status == 200  # open, for the kubelet's probes
    for headers in ({}, {"Authorization": "Bearer gw-tokem"}, {"Authorization": "gw-token"}):
        refused = await client.get("/home/", headers=headers)
        assert refused.status == 401, headers
        assert "only its gateway" in await refused.text()
    put = await client.put("/home/a.txt", data=b"hello\n", headers=gateway)
    assert put.status == 201
    assert (tmp_path / "home" / "a.txt").read_bytes() == b"hello\n"
    assert await (await client.get("/home/a.txt", headers=gateway)).read() == b"hello\n"
    listing = await client.request("PROPFIND", "/home/", headers={**gateway, "Depth": "1"})
    assert listing.status == 207 and "a.txt" in await listing.text()
    brew = await client.request("PATCH", "/home/a.txt", headers=gateway)
    assert brew.status == 405 and "PROPFIND" in brew.headers["Allow"]
    assert (await client.delete("/home/nothing", headers=gateway)).status == 404
    assert (await client.get("/elsewhere/a.txt", headers=gateway)).status in (403, 404)
    garbage = await client.request("PROPFIND", "/home/", data=b"<not xml",
                                   headers={**gateway, "Depth": "0"})
    assert garbage.status == 400
    lock = await client.request("LOCK", "/home/a.txt", data=LOCK_BODY,
                                headers={**gateway, "Timeout": "Second-60"})
    assert lock.status == 200 and lock.headers["Lock-Token"].startswith("<opaquelocktoken:")
    locked = await client.put("/home/a.txt", data=b"other\n", headers=gateway)
    assert locked.status == 423
    assert (tmp_path / "home" / "a.txt").read_bytes() == b"hello\n"
    metrics = await (await client.get("/metrics")).text()
    assert 'jupyterhub_sidecars_kubepie_fileserver_requests_total{code="423",method="PUT"}' \
        in metrics


LOCK_BODY = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:">'
             b"<D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>"
             b"<D:owner>test</D:owner></D:lockinfo>")


async def test_the_walltime_sidecar_status_says_starting_then_counts_down(
        aiohttp_client: AiohttpClient) -> None:
    """What the status bar reads: 503 "starting" until the hub told the start time, then the
    countdown with its warnings; never cached."""
    settings = SidecarSettings(JUPYTERHUB_API_URL="http://hub:8081/hub/api", api_token="t",
                               JUPYTERHUB_USER="ada", limit="30m", warn="10m,1m")
    hub = HubClient(settings.api_url, settings.token)
    sidecar = WalltimeSidecar(settings, hub)
    app = make_app(CollectorRegistry())
    add_walltime_routes(app, sidecar)
    client = await aiohttp_client(app)
    starting = await client.get("/status")
    assert starting.status == 503 and (await starting.json())["state"] == "starting"
    sidecar.countdown = Countdown(utcnow() - timedelta(minutes=25), 1800.0, (600.0, 60.0))
    running = await client.get("/status")
    body = await running.json()
    assert running.status == 200 and running.headers["Cache-Control"] == "no-store"
    assert body["user"] == "ada" and body["limit"] == 1800
    assert 290 <= body["remaining"] <= 300 and body["state"] == "warning"
    assert (await client.post("/status")).status == 405
    await hub.aclose()


async def test_a_listing_says_the_same_as_the_general_property_path(
        aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """An allprop listing takes a shorter path than a PROPFIND that names properties: both
    must say the same for awkward names, folders, dead properties and a locked member."""
    home = tmp_path / "home"
    (home / "sub").mkdir(parents=True)
    (home / "a&b<c>.txt").write_bytes(b"x" * 11)
    (home / "locked.csv").write_bytes(b"1,2\n")
    settings = FileserverSettings(mounts=f"home={home}", access_token="gw")
    client = await aiohttp_client(fileserver_app(settings, CollectorRegistry()))
    gateway = {"Authorization": "Bearer gw"}
    patched = await client.request("PROPPATCH", "/home/a%26b%3Cc%3E.txt", headers=gateway,
                                   data=b'<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z">'
                                        b"<D:set><D:prop><Z:note>kept &amp; shown</Z:note>"
                                        b"</D:prop></D:set></D:propertyupdate>")
    assert patched.status == 207
    lock = await client.request("LOCK", "/home/locked.csv", data=LOCK_BODY, headers=gateway)
    assert lock.status == 200

    async def listing(body: bytes) -> dict[str, dict[str, ET.Element]]:
        answer = await client.request("PROPFIND", "/home/", data=body,
                                      headers={**gateway, "Depth": "1"})
        assert answer.status == 207
        root = SafeET.fromstring(await answer.read())
        found = {}
        for response in root.iter("{DAV:}response"):
            href = response.findtext("{DAV:}href")
            assert href
            [ok] = [p for p in response.iter("{DAV:}propstat")
                    if "200" in (p.findtext("{DAV:}status") or "")]
            prop = ok.find("{DAV:}prop")
            assert prop is not None
            found[href] = {child.tag: child for child in prop}
        return found

    plain = await listing(b"")
    general = await listing(b'<D:propfind xmlns:D="DAV:"><D:allprop/>'
                            b'<D:include><D:nothing-here/></D:include></D:propfind>')
    assert set(plain) == {"/home/", "/home/sub/", "/home/a%26b%3Cc%3E.txt", "/home/locked.csv"}
    for href, props in plain.items():
        assert {tag: ET.tostring(e) for tag, e in props.items()} == \
            {tag: ET.tostring(e) for tag, e in general[href].items()}, href
    awkward = plain["/home/a%26b%3Cc%3E.txt"]
    assert awkward["{DAV:}displayname"].text == "a&b<c>.txt"
    assert awkward["{DAV:}getcontentlength"].text == "11"
    assert awkward["{DAV:}getcontenttype"].text == "text/plain"
    assert awkward["{urn:z}note"].text == "kept & shown"
    got = await client.get("/home/a%26b%3Cc%3E.txt", headers=gateway)
    assert awkward["{DAV:}getetag"].text == got.headers["ETag"]
    assert plain["/home/sub/"]["{DAV:}resourcetype"].find("{DAV:}collection") is not None
    assert plain["/home/locked.csv"]["{DAV:}lockdiscovery"].find("{DAV:}activelock") is not None
    assert len(plain["/home/sub/"]["{DAV:}lockdiscovery"]) == 0
