"""``jupyterhub-sidecars kubepie webhook``: serve /mutate over TLS."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from joserfc.jwk import ECKey
from prometheus_client import CollectorRegistry, Counter

from services.kubepie.pod_identity import load_key
from services.kubepie.webhook.admission import review
from services.kubepie.webhook.settings import WebhookSettings
from services.runtime.logs import configure_logging
from services.runtime.settings import run_service_main
from services.runtime.tls_reload import ReloadingCertificate
from services.runtime.webapp import make_app, run_service, until_stopped

log = logging.getLogger(__name__)


def main(args: argparse.Namespace) -> int:
    loaded: dict[str, Any] = {}

    def load(settings: WebhookSettings) -> None:
        """The public key and the certificate, read before serving (exit 2 if unreadable)."""
        loaded["key"] = load_key(settings.identity_public_key_file)
        loaded["tls"] = ReloadingCertificate(settings.tls_cert_file, settings.tls_key_file,
                                             settings.tls_reload_interval)

    return run_service_main("kubepie webhook", WebhookSettings, args,
                            lambda settings: _run(settings, loaded["key"], loaded["tls"]),
                            prepare=load)


def build_app(key: ECKey, registry: CollectorRegistry) -> web.Application:
    decisions = Counter("jupyterhub_sidecars_kubepie_webhook_reviews",
                        "Admission reviews by outcome.", ["allowed"], registry=registry)
    app = make_app(registry, client_max_size=4 * 1024 * 1024)  # the API server caps 3 MiB

    async def mutate(request: web.Request) -> web.Response:
        try:
            answer = review(json.loads(await request.read()), key)
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": f"not an AdmissionReview: {exc}"}, status=400)
        allowed = answer["response"]["allowed"]
        decisions.labels(str(allowed).lower()).inc()
        log.info("review", extra={"allowed": allowed, "review_uid": answer["response"]["uid"],
                                  "reason": answer["response"].get("status", {}).get(
                                      "message", "")})
        return web.json_response(answer)

    app.router.add_post("/mutate", mutate)
    return app


async def _run(settings: WebhookSettings, key: ECKey, tls: ReloadingCertificate) -> int:
    configure_logging("kubepie-webhook", settings.log_level)
    app = build_app(key, CollectorRegistry())

    async def watch_certificate(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(tls.watch())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(watch_certificate)
    return await run_service(app, until_stopped, host=settings.host, port=settings.port,
                             ssl_context=tls.context)
