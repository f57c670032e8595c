"""``jupyterhub-sidecars kubepie <part>``: the parts of kubepie."""

from __future__ import annotations

import argparse

from services.kubepie.fileserver import main as fileserver


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parts = parser.add_subparsers(dest="part", required=True, metavar="PART")
    fileserver_parser = parts.add_parser(
        "fileserver", help="the per-user WebDAV/HTTPS server, running as the user",
        description="Serve folders over WebDAV (class 1 and 2) and plain HTTP as one user: "
                    "started as root it drops to FILESERVER_UID/GID/GROUPS first.")
    fileserver.add_arguments(fileserver_parser)
    fileserver_parser.set_defaults(run_part=fileserver.main)


def main(args: argparse.Namespace) -> int:
    return int(args.run_part(args))
