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


def test_sigint_while_a_service_is_still_importing_stops_it_quietly() -> None:
    """JupyterHub stops the services it manages with SIGINT — in the demo's CI run, once,
    while the walltime backstop was still importing aiohttp: a traceback in the log. The
    signal here arrives at the same point, from the process itself."""
    probe = ("import importlib, os, signal, sys\n"
             # Python's own handler, as in a process started from a terminal (a background
             # job or a CI runner may start this one with SIGINT ignored)
             "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
             "from services import cli\n"
             "real = importlib.import_module\n"
             "def interrupted(name, *rest, **options):\n"
             "    importlib.import_module = real  # once: the first import cli makes\n"
             "    os.kill(os.getpid(), signal.SIGINT)\n"
             "    return real(name, *rest, **options)\n"
             "importlib.import_module = interrupted\n"
             "sys.exit(cli.main(['walltime', '--help']))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
