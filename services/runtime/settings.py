"""Settings from environment variables and flags, validated once at start.

Each service declares a pydantic-settings model. Flags are generated from its fields, so the
environment name, the flag and the docs never disagree. A bad value ends the process with one
line that names the setting and exit status 2 (the convention of argparse and of most CLIs).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode

from services.runtime.durations import parse_duration, parse_duration_list
from services.runtime.privileges import PrivilegeError, parse_ids

Duration = Annotated[float, BeforeValidator(parse_duration)]
# A duration where 0 means something of its own ("no limit", "never"), said in its description.
DurationOrZero = Annotated[float, BeforeValidator(partial(parse_duration, allow_zero=True))]
DurationList = Annotated[tuple[float, ...], NoDecode, BeforeValidator(parse_duration_list)]
LogLevel = Annotated[str, Field(pattern=r"(?i)^(debug|info|warning|error)$")]
Port = Annotated[int, Field(ge=1, le=65535)]

SETTINGS_ERROR_EXIT = 2

S = TypeVar("S", bound=BaseSettings)


def read_secret_file(path: Path) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror or exc}") from None
    if not value:
        raise ValueError("the file is empty")
    return value


def secret_from(value: SecretStr | None, path: Path | None, env: str) -> SecretStr:
    """A secret given directly (``env``) or as a file (``env``_FILE, e.g. a mounted Secret)."""
    if path is not None:
        try:
            return SecretStr(read_secret_file(path))
        except ValueError as exc:
            raise ValueError(f"{env}_FILE={str(path)!r}: {exc}") from None
    if value is None or not value.get_secret_value():
        raise ValueError(f"{env} or {env}_FILE is required")
    return value


class SettingsError(Exception):
    """A setting is missing or invalid; the message names it."""


def env_name(model: type[BaseSettings], field_name: str) -> str:
    """The environment variable that sets ``field_name``."""
    info = model.model_fields[field_name]
    if isinstance(info.validation_alias, str):
        return info.validation_alias
    prefix = str(model.model_config.get("env_prefix", ""))
    return f"{prefix}{field_name}".upper()


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_setting_flags(parser: argparse.ArgumentParser, model: type[BaseSettings],
                      skip: set[str] | None = None) -> None:
    """One ``--flag`` per field; flags win over the environment."""
    group = parser.add_argument_group(f"{model.__name__} (flag or environment variable)")
    for name, info in model.model_fields.items():
        if skip and name in skip:
            continue
        help_text = f"{info.description or ''} [env {env_name(model, name)}]"
        if _is_bool(info):
            group.add_argument(flag_name(name), dest=name, action="store_true", default=None,
                               help=help_text)
        else:
            group.add_argument(flag_name(name), dest=name, default=None, metavar="VALUE",
                               help=help_text)


def _is_bool(info: FieldInfo) -> bool:
    return info.annotation is bool


def load_settings(model: type[S], args: argparse.Namespace | None = None) -> S:
    """Build ``model`` from the environment, overridden by flags that were given."""
    overrides: dict[str, Any] = {}
    if args is not None:
        for name in model.model_fields:
            value = getattr(args, name, None)
            if value is not None:
                overrides[name] = value
    try:
        return model(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_error(model, exc, overrides)) from None


def describe_error(model: type[BaseSettings], exc: ValidationError, flags: dict[str, Any]) -> str:
    """The first problem, as one line an operator can act on."""
    error = exc.errors()[0]
    loc = [str(p) for p in error.get("loc", ())]
    field = _field_for(model, loc[0]) if loc else None
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if field is None:
        return message
    name = flag_name(field) if field in flags else env_name(model, field)
    if error.get("type") == "missing":
        return f"{name} is required: {model.model_fields[field].description or ''}".rstrip(": ")
    value = error.get("input")
    shown = "" if value is None or isinstance(value, dict) else f"={value!r}"
    if _is_secret(model, field):
        shown = "=<hidden>"
    return f"{name}{shown}: {message}"


def _field_for(model: type[BaseSettings], loc: str) -> str | None:
    if loc in model.model_fields:
        return loc
    for name in model.model_fields:
        if env_name(model, name).lower() == loc.lower():
            return name
    return None


def _is_secret(model: type[BaseSettings], field: str) -> bool:
    return "token" in field or "secret" in field


def exit_on_settings_error(service: str, error: SettingsError) -> NoReturn:
    print(f"jupyterhub-sidecars {service}: {error}", file=sys.stderr)
    raise SystemExit(SETTINGS_ERROR_EXIT)


class ServiceSettings(BaseSettings):
    """Where a service listens and how much it logs: the start of every service's settings.
    Each service declares ``port`` again with its own default and what it serves there; a
    service that other pods reach declares ``host`` again with 0.0.0.0."""

    host: str = Field("127.0.0.1", description="address to listen on; 127.0.0.1 keeps it to "
                                               "its pod")
    port: Port
    log_level: LogLevel = Field("INFO", description="log level: debug, info, warning or error")


class ProcessIsolation(BaseSettings):
    """How a sidecar keeps to its user when it runs as a local process (the embedded
    default) rather than as a container of the user's pod: it listens on a UNIX socket only
    that user may open, and, started as root, drops to its own ids once its credential files
    are read and its sockets bound. In a pod none of these are set."""

    socket: Path | None = Field(None, description="listen on this UNIX socket (mode 0600) "
                                                  "instead of host:port")
    socket_owner: int | None = Field(None, ge=1, description="uid that owns the socket (the "
                                                             "notebook user's)")
    run_as: str = Field("", description="uid:gid[:groups] to switch to after start, when "
                                        "started as root")

    def isolation_ids(self) -> tuple[int, int, tuple[int, ...]] | None:
        """(uid, gid, groups) of ``run_as``; a bad value is a ValueError naming it."""
        if not self.run_as:
            return None
        prefix = str(self.model_config.get("env_prefix", "")).upper()
        return parse_ids(self.run_as, f"{prefix}RUN_AS")


def run_service_main(service: str, model: type[S], args: argparse.Namespace | None,
                     run: Callable[[S], Coroutine[Any, Any, int]],
                     prepare: Callable[[S], None] | None = None) -> int:
    """What every ``jupyterhub-sidecars <service>`` does first: settings from the environment
    and flags (a bad one: one line on stderr, exit 2), an optional ``prepare`` step before
    the event loop (loading keys, dropping privileges: a ``ValueError``, ``OSError`` or
    ``PrivilegeError`` there is a configuration error too), then the service's coroutine,
    whose result is the exit status."""
    try:
        settings = load_settings(model, args)
    except SettingsError as exc:
        exit_on_settings_error(service, exc)
    if prepare is not None:
        try:
            prepare(settings)
        except (ValueError, OSError, PrivilegeError) as exc:
            print(f"jupyterhub-sidecars {service}: {exc}", file=sys.stderr)
            return SETTINGS_ERROR_EXIT
    return asyncio.run(run(settings))
