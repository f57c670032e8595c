"""``jupyterhub-sidecars tokenhelper``: wiring, and the loop that keeps the token fresh."""

from __future__ import annotations

import argparse
import asyncio
import logging

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.hub.client import HubClient
from services.runtime.logs import configure_logging
from services.runtime.retry import Backoff
from services.runtime.settings import (
    SettingsError,
    add_setting_flags,
    exit_on_settings_error,
    load_settings,
)
from services.runtime.webapp import make_app, run_service
from services.tokenhelper.agent_socket import AgentSocket
from services.tokenhelper.arc import write_placeholder
from services.tokenhelper.bearer_file import prepare_run_dir, write_token_async
from services.tokenhelper.broker import TokenBroker, TokenUnavailable
from services.tokenhelper.provider import Provider
from services.tokenhelper.settings import TokenhelperSettings
from services.tokenhelper.tokens import AccessToken
from services.tokenhelper.web import add_routes
from services.walltime.metrics import PREFIX, hub_request_counter

log = logging.getLogger("sidecars.tokenhelper")

RETRY = Backoff(attempts=None, base=1.0, cap=30.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_setting_flags(parser, TokenhelperSettings)


def main(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(TokenhelperSettings, args)
    except SettingsError as exc:
        exit_on_settings_error("tokenhelper", exc)
    return asyncio.run(_run(settings))


async def _run(settings: TokenhelperSettings) -> int:
    configure_logging("tokenhelper", settings.log_level)
    assert settings.api_token is not None and settings.client_secret is not None
    await asyncio.to_thread(prepare_run_dir, settings.run_dir, settings.owner_uid)
    await asyncio.to_thread(write_placeholder, settings.run_dir, settings.owner_uid)
    registry = CollectorRegistry()
    expiry = Gauge(f"{PREFIX}_tokenhelper_access_token_expiry_timestamp_seconds",
                   "When the access token handed out now expires (Unix time).",
                   registry=registry)
    refreshes = Counter(f"{PREFIX}_tokenhelper_refreshes", "Refreshes at the provider.",
                        registry=registry)
    provider = Provider(settings.oidc_issuer, settings.client_id,
                        settings.client_secret.get_secret_value())
    async with HubClient(settings.api_url, settings.api_token.get_secret_value(),
                         observer=hub_request_counter(registry)) as hub:
        broker = TokenBroker(hub, settings.user, provider, min_valid=settings.min_valid,
                             write_back=settings.write_back)

        async def publish(access: AccessToken) -> None:
            await write_token_async(settings.bearer_token_file, access.value,
                                    settings.owner_uid)
            if access.expires_at is not None:
                expiry.set(access.expires_at)

        broker.on_new_token(publish)
        app = make_app(registry, healthy=lambda: broker.current is not None)
        add_routes(app, broker)
        agent = AgentSocket(broker, settings.oidc_issuer)
        await agent.start(settings.agent_socket, settings.owner_uid)
        try:
            return await run_service(app, lambda: keep_fresh(broker, refreshes),
                                     host=settings.host, port=settings.port)
        finally:
            await agent.close()
            await provider.aclose()


async def keep_fresh(broker: TokenBroker, refreshes: Counter) -> int:
    """Refresh ahead of time so the file and socket never hold an expired token."""
    failures = 0
    while True:
        before = broker.refreshes
        try:
            await broker.token()
            failures = 0
        except TokenUnavailable as exc:
            failures += 1
            delay = RETRY.delay(failures)
            log.warning("no fresh access token yet", extra={"error": str(exc),
                                                            "retry_in_s": round(delay, 1)})
            await asyncio.sleep(delay)
            continue
        refreshes.inc(broker.refreshes - before)
        await asyncio.sleep(max(1.0, broker.refresh_due_in()))
