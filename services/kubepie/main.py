"""``jupyterhub-sidecars kubepie <part>``: the parts of kubepie.

Only the chosen part's code is imported (the file server runs once per user: every MiB of
libraries it does not need counts), so the parts are named here by module.
"""

from __future__ import annotations

import argparse
import importlib
from typing import NamedTuple

from services.runtime.settings import add_setting_flags


class Part(NamedTuple):
    module: str          # has main(args), and add_arguments(parser) when settings is None
    help: str
    description: str
    settings: str | None = None  # "module:Class" of its settings: the flags, cheaply


PARTS = {
    "fileserver": Part(
        "services.kubepie.fileserver.main",
        "the per-user WebDAV/HTTPS server, running as the user",
        "Serve folders over WebDAV (class 1 and 2) and plain HTTP as one user: started as "
        "root it drops to FILESERVER_UID/GID/GROUPS first.",
        "services.kubepie.fileserver.settings:FileserverSettings"),
    "gateway": Part(
        "services.kubepie.gateway.main",
        "identifies users by OIDC and routes them to their own file server",
        "Authenticate every request (bearer token, access key, browser login), start the "
        "user's file server on demand and forward the request to it.",
        "services.kubepie.gateway.settings:GatewaySettings"),
    "webhook": Part(
        "services.kubepie.webhook.main",
        "admission webhook: file server pods run only as the identity the gateway signed",
        "A mutating admission webhook (AdmissionReview v1, TLS) that checks the signed "
        "identity on kubepie file server pods and sets their securityContext from it.",
        "services.kubepie.webhook.settings:WebhookSettings"),
    "keygen": Part(
        "services.kubepie.keygen",
        "print a new identity signing key pair (gateway: private, webhook: public)",
        "Write an EC P-256 key pair in PEM: the gateway signs pod identities with the "
        "private key, the admission webhook checks them with the public key."),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parts = parser.add_subparsers(dest="part", required=True, metavar="PART")
    for name, part in PARTS.items():
        sub = parts.add_parser(name, help=part.help, description=part.description)
        if part.settings is None:
            importlib.import_module(part.module).add_arguments(sub)
        else:
            module, _, cls = part.settings.partition(":")
            add_setting_flags(sub, getattr(importlib.import_module(module), cls))
        sub.set_defaults(run_module=part.module)


def main(args: argparse.Namespace) -> int:
    return int(importlib.import_module(args.run_module).main(args))
