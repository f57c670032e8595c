"""``jupyterhub-sidecars kubepie keygen``: a new identity signing key pair, as PEM files."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from services.kubepie.pod_identity import generate_key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--private", type=Path, required=True,
                        help="where to write the private key (the gateway's; mode 0600)")
    parser.add_argument("--public", type=Path, required=True,
                        help="where to write the public key (the admission webhook's)")


def main(args: argparse.Namespace) -> int:
    private, public = generate_key()
    for path in (args.private, args.public):
        if path.exists():
            print(f"jupyterhub-sidecars kubepie keygen: {path} exists; not overwriting it")
            return 1
    descriptor = os.open(args.private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(private)
    args.public.write_text(public)
    print(f"wrote {args.private} (private, for the gateway) and {args.public} (public, for "
          "the webhook)")
    return 0
