"""``jupyterhub-sidecars <service> …``: one entry point for every service.

Only the chosen service's module is imported: the sidecars and the file server should not carry
JupyterHub, SQLAlchemy and the Kubernetes client in memory (99 MiB resident for everything
against 52 MiB for the file server alone, measured) nor wait a second for them at start.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    module: str  # has add_arguments(parser) and main(args) -> int
    help: str
    description: str


COMMANDS = {
    "walltime": Command(
        "services.walltime.main", "count down a server's walltime and stop it at the end",
        "Count down a server's time limit and stop it through the hub API."),
    "tokenhelper": Command(
        "services.tokenhelper.main", "hand fresh OIDC access tokens (only) to the notebook",
        "Refresh the user's OIDC tokens from the hub's auth_state and serve the access token "
        "on 127.0.0.1, in the bearer token file and on a socket."),
    "arc-profile": Command(
        "services.tokenhelper.arc", "print the shell snippet that lets ARC 6 commands use the "
        "token", "Print /etc/profile.d/arc-token.sh for notebook images (see README)."),
    "kubepie": Command(
        "services.kubepie.main", "per-user web/WebDAV servers that run as the user",
        "kubepie: each user's files over WebDAV/HTTPS with their own uid and gids."),
    "metrics": Command(
        "services.metrics.main", "node agent: per-server memory, CPU, GPU and walltime for "
        "Prometheus", "Export the usage of every JupyterHub user server on this node (cgroup "
        "v2 + NVML + the pods of the Kubernetes API), or of the servers on this machine "
        "without Kubernetes."),
    "usage": Command(
        "services.metrics.usage_command", "show this session's memory, CPU, GPU memory and "
        "walltime", "Inside a session: the container's usage and limits, GPU memory by "
        "process, and the time left."),
    "demo": Command(
        "services.demo.main", "run JupyterHub with the sidecars on this machine (make demo)",
        "Start a real JupyterHub on 127.0.0.1 with the local spawner and hooks."),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser; the options of ``chosen`` (or of every service when None) are added."""
    parser = argparse.ArgumentParser(
        prog="jupyterhub-sidecars",
        description="Sidecar services for JupyterHub. Every setting is also an environment "
                    "variable; flags win.")
    commands = parser.add_subparsers(dest="service", required=True, metavar="SERVICE")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.description)
        if chosen is None or name == chosen:
            module = importlib.import_module(command.module)
            module.add_arguments(sub)
            sub.set_defaults(run=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in arguments if not a.startswith("-")), None)
    try:
        args = build_parser(chosen if chosen in COMMANDS else "").parse_args(arguments)
        return int(args.run(args))
    except KeyboardInterrupt:
        # SIGINT before the service has its own handlers — JupyterHub stops the services it
        # manages with SIGINT, perhaps while one is still importing; a user presses Ctrl-C
        # during a start: stop without a traceback, with the status a shell reports.
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
