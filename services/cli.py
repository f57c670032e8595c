"""``jupyterhub-sidecars <service> …``: one entry point for every service."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from services.demo import main as demo
from services.kubepie import main as kubepie
from services.metrics import main as metrics
from services.metrics import usage_command as usage
from services.tokenhelper import main as tokenhelper
from services.walltime import main as walltime


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyterhub-sidecars",
        description="Sidecar services for JupyterHub. Every setting is also an environment "
                    "variable; flags win.")
    commands = parser.add_subparsers(dest="service", required=True, metavar="SERVICE")
    walltime_parser = commands.add_parser(
        "walltime", help="count down a server's walltime and stop it at the end",
        description="Count down a server's time limit and stop it through the hub API.")
    walltime.add_arguments(walltime_parser)
    walltime_parser.set_defaults(run=walltime.main)
    tokenhelper_parser = commands.add_parser(
        "tokenhelper", help="hand fresh OIDC access tokens (only) to the notebook",
        description="Refresh the user's OIDC tokens from the hub's auth_state and serve the "
                    "access token on 127.0.0.1, in the bearer token file and on a socket.")
    tokenhelper.add_arguments(tokenhelper_parser)
    tokenhelper_parser.set_defaults(run=tokenhelper.main)
    arc_parser = commands.add_parser(
        "arc-profile", help="print the shell snippet that lets ARC 6 commands use the token",
        description="Print /etc/profile.d/arc-token.sh for notebook images (see README).")
    arc_parser.set_defaults(run=_print_arc_profile)
    kubepie_parser = commands.add_parser(
        "kubepie", help="per-user web/WebDAV servers that run as the user",
        description="kubepie: each user's files over WebDAV/HTTPS with their own uid and gids.")
    kubepie.add_arguments(kubepie_parser)
    metrics_parser = commands.add_parser(
        "metrics", help="node agent: per-server memory, CPU, GPU and walltime for Prometheus",
        description="Export the usage of every JupyterHub user server on this node (cgroup v2 "
                    "+ NVML + the pods of the Kubernetes API), or of the servers on this "
                    "machine without Kubernetes.")
    metrics.add_arguments(metrics_parser)
    metrics_parser.set_defaults(run=metrics.main)
    usage_parser = commands.add_parser(
        "usage", help="show this session's memory, CPU, GPU memory and walltime",
        description="Inside a session: the container's usage and limits, GPU memory by "
                    "process, and the time left.")
    usage.add_arguments(usage_parser)
    usage_parser.set_defaults(run=usage.main)
    demo_parser = commands.add_parser(
        "demo", help="run JupyterHub with the sidecars on this machine (make demo)",
        description="Start a real JupyterHub on 127.0.0.1 with the local spawner and hooks.")
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(run=demo.main)
    return parser


def _print_arc_profile(_: argparse.Namespace) -> int:
    from services.tokenhelper.arc import profile_snippet

    print(profile_snippet(), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
