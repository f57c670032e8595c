"""``jupyterhub-sidecars walltime [--all-servers]``: wiring of settings, hub client and web app."""

from __future__ import annotations

import argparse

from prometheus_client import CollectorRegistry

from services.hub.client import HubClient, hub_request_counter
from services.runtime.logs import configure_logging
from services.runtime.settings import (
    add_setting_flags,
    run_service_main,
)
from services.runtime.webapp import isolate, make_app, run_service
from services.walltime.backstop import Backstop
from services.walltime.metrics import WalltimeCollector
from services.walltime.settings import BackstopSettings, SidecarSettings
from services.walltime.sidecar import WalltimeSidecar, add_routes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all-servers", action="store_true",
                        help="run as the hub-wide backstop (a JupyterHub service) instead of "
                             "one server's sidecar")
    add_setting_flags(parser, SidecarSettings)
    add_setting_flags(parser, BackstopSettings, skip=set(SidecarSettings.model_fields))


def main(args: argparse.Namespace) -> int:
    if args.all_servers:
        return run_service_main("walltime", BackstopSettings, args, _backstop)
    return run_service_main("walltime", SidecarSettings, args, _sidecar)


async def _sidecar(settings: SidecarSettings) -> int:
    configure_logging("walltime", settings.log_level)
    registry = CollectorRegistry()
    count = hub_request_counter(registry)
    sidecar: WalltimeSidecar

    def observe(method: str, outcome: str) -> None:
        sidecar.hub_requests += 1
        count(method, outcome)

    async with HubClient(settings.api_url, settings.token, observer=observe) as hub:
        sidecar = WalltimeSidecar(settings, hub)
        registry.register(WalltimeCollector(sidecar.countdowns))
        app = make_app(registry)
        add_routes(app, sidecar)
        return await run_service(app, sidecar.run, host=settings.host, port=settings.port,
                                 unix_socket=settings.socket,
                                 socket_owner=settings.socket_owner,
                                 before_serving=isolate(settings, "WALLTIME_RUN_AS"))


async def _backstop(settings: BackstopSettings) -> int:
    configure_logging("walltime-backstop", settings.log_level)
    registry = CollectorRegistry()
    async with HubClient(settings.api_url, settings.token,
                         observer=hub_request_counter(registry)) as hub:
        backstop = Backstop(settings, hub, registry)
        registry.register(WalltimeCollector(backstop.countdowns))
        app = make_app(registry)
        return await run_service(app, backstop.run, host=settings.host, port=settings.port)
