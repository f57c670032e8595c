"""Settings of the walltime sidecar and of the hub-wide backstop."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.contract import WALLTIME_PORT
from services.runtime.settings import (
    Duration,
    DurationList,
    Port,
    ProcessIsolation,
    ServiceSettings,
    secret_from,
)

DEFAULT_PORT = WALLTIME_PORT


class _HubAccess(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WALLTIME_", extra="ignore",
                                      populate_by_name=True)

    api_url: str = Field(validation_alias="JUPYTERHUB_API_URL",
                         description="JupyterHub REST API URL, e.g. http://hub:8081/hub/api")
    api_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("WALLTIME_API_TOKEN", "JUPYTERHUB_API_TOKEN"),
        description="hub API token (or give WALLTIME_API_TOKEN_FILE)")
    api_token_file: Path | None = Field(
        None, description="file holding the hub API token (a mounted Secret)")
    port: Port = Field(DEFAULT_PORT, description="port for /status, /healthz and /metrics")

    @model_validator(mode="after")
    def _check_access(self) -> Self:
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"JUPYTERHUB_API_URL={self.api_url!r} must be an http(s) URL")
        self.api_token = secret_from(self.api_token, self.api_token_file, "WALLTIME_API_TOKEN")
        return self

    @property
    def token(self) -> str:
        assert self.api_token is not None
        return self.api_token.get_secret_value()


class SidecarSettings(ProcessIsolation, _HubAccess):  # _HubAccess last: its config wins
    """One server's countdown, running beside its notebook."""

    user: str = Field(validation_alias="JUPYTERHUB_USER", min_length=1,
                      description="owner of the server (set by the spawner)")
    server_name: str = Field("", validation_alias="JUPYTERHUB_SERVER_NAME",
                             description="server name; empty for the default server")
    limit: Duration | None = Field(None, description="time limit of the session: 90s, 30m, "
                                                     "12h, 1d; unset: none (idle only)")
    warn: DurationList = Field((600.0, 60.0),
                               description="warn this long before the end: e.g. 10m,1m")
    idle: Duration | None = Field(None, description="stop the server after this long without "
                                                    "activity: 2h; unset: never")
    idle_warn: DurationList = Field((600.0, 60.0), description="warn this long before the "
                                                               "idle stop: e.g. 10m,1m")
    activity_lag: Duration = Field(30.0, description="how late the hub may learn of activity "
                                                     "(the server's JUPYTERHUB_ACTIVITY_"
                                                     "INTERVAL): the last check before an idle "
                                                     "stop waits this long")

    @model_validator(mode="after")
    def _check_isolation(self) -> Self:
        self.isolation_ids()
        if self.limit is None and self.idle is None:
            raise ValueError("set WALLTIME_LIMIT, WALLTIME_IDLE or both: with neither there "
                             "is nothing to count down")
        for name, value in (("WALLTIME_LIMIT", self.limit), ("WALLTIME_IDLE", self.idle)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be longer than 0")
        return self


class BackstopSettings(_HubAccess):
    """Hub-wide enforcement for servers whose sidecar is gone."""

    limit: Duration | None = Field(
        None, description="limit for servers started without a recorded walltime; "
                          "unset = leave them alone")
    interval: Duration = Field(60.0, description="how often to list the running servers")
    grace: Duration = Field(60.0, description="wait this long past a deadline before the "
                                              "backstop stops a server itself")
