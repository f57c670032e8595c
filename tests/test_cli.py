"""The one entry point: every service is reachable, and each loads only what it needs."""

from __future__ import annotations

import subprocess
import sys

from services.cli import COMMANDS, build_parser


def test_every_service_has_options_and_an_entry() -> None:
    parser = build_parser()
    for name in COMMANDS:
        args = parser.parse_args([name] if name != "kubepie" else [name, "fileserver"])
        assert callable(args.run), name


def test_a_service_does_not_import_the_others() -> None:
    probe = ("import sys; from services.cli import build_parser; build_parser('kubepie'); "
             "print(sorted(m for m in ('jupyterhub', 'kubernetes_asyncio', 'sqlalchemy', "
             "'authlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
