"""``jupyterhub-sidecars tokenhelper``: wiring, and the loop that keeps the token fresh."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.contract import METRIC_PREFIX
from services.hub.client import HubClient, hub_request_counter
from services.runtime.logs import configure_logging
from services.runtime.retry import Backoff
from services.runtime.settings import (
    add_setting_flags,
    run_service_main,
)
from services.runtime.webapp import isolate, make_app, run_service
from services.tokenhelper.agent_socket import AgentSocket
from services.tokenhelper.arc import write_placeholder
from services.tokenhelper.bearer_file import prepare_run_dir, write_token_async
from services.tokenhelper.broker import TokenBroker, TokenUnavailable
from services.tokenhelper.provider import Provider
from services.tokenhelper.settings import TokenhelperSettings
from services.tokenhelper.tokens import AccessToken
from services.tokenhelper.web import add_routes
from services.tokenhelper.write_back import WriteBack

log = logging.getLogger(__name__)
SHUTDOWN_FLUSH_TIMEOUT = 5.0  # within Kubernetes' default 30 s grace period

RETRY = Backoff(attempts=None, base=1.0, cap=30.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_setting_flags(parser, TokenhelperSettings)


def main(args: argparse.Namespace) -> int:
    return run_service_main("tokenhelper", TokenhelperSettings, args, _run)


async def _run(settings: TokenhelperSettings) -> int:
    configure_logging("tokenhelper", settings.log_level)
    assert settings.api_token is not None and settings.client_secret is not None
    await asyncio.to_thread(prepare_run_dir, settings.run_dir, settings.owner_uid)
    await asyncio.to_thread(write_placeholder, settings.run_dir, settings.owner_uid)
    registry = CollectorRegistry()
    expiry = Gauge(f"{METRIC_PREFIX}_tokenhelper_access_token_expiry_timestamp_seconds",
                   "When the access token handed out now expires (Unix time).",
                   registry=registry)
    refreshes = Counter(f"{METRIC_PREFIX}_tokenhelper_refreshes", "Refreshes at the provider.",
                        registry=registry)
    provider = Provider(settings.oidc_issuer, settings.client_id,
                        settings.client_secret.get_secret_value())
    async with HubClient(settings.api_url, settings.api_token.get_secret_value(),
                         timeout=settings.hub_timeout,
                         observer=hub_request_counter(registry)) as hub:
        writer = WriteBack(hub, settings.user) if settings.write_back else None
        broker = TokenBroker(hub, settings.user, provider, min_valid=settings.min_valid,
                             write_back=writer, audience_parameter=settings.audience_parameter)
        if writer is not None:
            _write_back_metrics(registry, writer)

        async def publish(access: AccessToken) -> None:
            await write_token_async(settings.bearer_token_file, access.value,
                                    settings.owner_uid)
            if access.expires_at is not None:
                expiry.set(access.expires_at)

        broker.on_new_token(publish)
        app = make_app(registry, healthy=lambda: broker.current is not None,
                       details=lambda: _health_details(broker, writer))
        add_routes(app, broker)
        agent = AgentSocket(broker, settings.oidc_issuer)
        await agent.start(settings.agent_socket, settings.owner_uid)

        async def main() -> int:
            if writer is None:
                return await keep_fresh(broker, refreshes)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(writer.run(), name="write-back")
                return await keep_fresh(broker, refreshes)

        try:
            return await run_service(app, main, host=settings.host, port=settings.port,
                                     unix_socket=settings.socket,
                                     socket_owner=settings.socket_owner or settings.owner_uid,
                                     metrics_port=settings.metrics_port,
                                     before_serving=isolate(settings, "TOKENHELPER_RUN_AS"))
        finally:
            if writer is not None:
                await _last_write_back(writer, settings.user)
            await agent.close()
            await provider.aclose()


async def _last_write_back(writer: WriteBack, user: str) -> None:
    """At SIGTERM: store a rotated refresh token the hub does not have yet, or say so."""
    if not writer.state.pending:
        return
    saved = False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SHUTDOWN_FLUSH_TIMEOUT):
            saved = await writer.flush()
    if saved:
        log.info("rotated refresh token stored at the hub at shutdown", extra={"user": user})
    else:
        log.error("stopping with a rotated refresh token the hub does not have: the user must "
                  "log in again", extra={"user": user, "error": writer.state.last_error})


def _health_details(broker: TokenBroker, writer: WriteBack | None) -> dict[str, object]:
    """/healthz stays 200 while tokens are served (a liveness restart would lose an unsaved
    refresh token); what needs attention is in the body."""
    details: dict[str, object] = {"access_token": "ready" if broker.current else "none yet",
                                  "provider": broker.provider_problem or "ok"}
    if writer is not None:
        state = writer.state
        details["write_back"] = {"pending": state.pending, "pending_since": state.pending_since,
                                 "failures": state.failures, "last_error": state.last_error}
    return details


def _write_back_metrics(registry: CollectorRegistry, writer: WriteBack) -> None:
    Gauge(f"{METRIC_PREFIX}_tokenhelper_write_back_pending",
          "1 while a rotated refresh token is not yet stored at the hub.",
          registry=registry).set_function(lambda: float(writer.state.pending))
    Gauge(f"{METRIC_PREFIX}_tokenhelper_write_back_failures",
          "Failed tries to store the rotated refresh token since the last success.",
          registry=registry).set_function(lambda: float(writer.state.failures))
    Gauge(f"{METRIC_PREFIX}_tokenhelper_write_back_pending_since_timestamp_seconds",
          "When the oldest unsaved rotation happened (Unix time; 0 when none is pending).",
          registry=registry).set_function(lambda: writer.state.pending_since or 0.0)


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
            problem = broker.provider_problem or {}
            log.warning("no fresh access token yet", extra={"error": str(exc),
                                                            "retry_in_s": round(delay, 1),
                                                            "hint": problem.get("hint")})
            await asyncio.sleep(delay)
            continue
        refreshes.inc(broker.refreshes - before)
        await asyncio.sleep(max(1.0, broker.refresh_due_in()))
