"""Each aiohttp app in process, through pytest-aiohttp's ``aiohttp_client``: routes, the
answers to bad input and the health verdicts, in milliseconds — the real-process tests keep
what only a process shows (signals, privilege drops, exit codes)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from joserfc.jwk import ECKey
from prometheus_client import CollectorRegistry

from services.kubepie.webhook.main import build_app as webhook_app
from services.runtime.webapp import make_app

ClientFactory = Any  # pytest-aiohttp's aiohttp_client


async def test_healthz_says_ok_or_503_with_what_an_operator_should_know(
        aiohttp_client: ClientFactory) -> None:
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
        aiohttp_client: ClientFactory) -> None:
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
        aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(webhook_app(ECKey.generate_key("P-256"),
                                              CollectorRegistry()))
    response = await client.post("/mutate", data=b"x" * (5 * 1024 * 1024))
    assert response.status == 413


async def test_a_service_route_sits_beside_healthz_and_metrics(
        aiohttp_client: ClientFactory) -> None:
    app = make_app(CollectorRegistry())

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hi")

    app.router.add_get("/hello", hello)
    client = await aiohttp_client(app)
    assert await (await client.get("/hello")).text() == "hi"
    assert (await client.get("/nothing")).status == 404
