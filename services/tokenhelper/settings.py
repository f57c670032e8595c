"""Settings of the tokenhelper sidecar."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.contract import TOKENHELPER_PORT
from services.runtime.settings import (
    Duration,
    Port,
    ProcessIsolation,
    ServiceSettings,
    secret_from,
)

DEFAULT_PORT = TOKENHELPER_PORT


class TokenhelperSettings(ProcessIsolation, ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TOKENHELPER_", extra="ignore",
                                      populate_by_name=True)

    api_url: str = Field(validation_alias="JUPYTERHUB_API_URL",
                         description="JupyterHub REST API URL, e.g. http://hub:8081/hub/api")
    user: str = Field(validation_alias="JUPYTERHUB_USER", min_length=1,
                      description="the user whose tokens this sidecar hands out")
    api_token: SecretStr | None = Field(
        None, description="hub token with admin:auth_state!user=<user> "
                          "(or give TOKENHELPER_API_TOKEN_FILE)")
    api_token_file: Path | None = Field(None, description="file holding that hub token")
    oidc_issuer: str = Field(description="issuer URL; discovery is read from "
                                         "<issuer>/.well-known/openid-configuration")
    client_id: str = Field(min_length=1, description="OIDC client id (the hub's client)")
    client_secret: SecretStr | None = Field(
        None, description="OIDC client secret (or give TOKENHELPER_CLIENT_SECRET_FILE)")
    client_secret_file: Path | None = Field(None, description="file holding the client secret")
    run_dir: Path = Field(Path("/run/sidecars"),
                          description="shared folder for the bearer token file (emptyDir)")
    uid: int | None = Field(None, ge=0, description="owner of the files it writes (the "
                                                    "notebook user's uid); default: its own")
    min_valid: Duration = Field(60.0, description="refresh when the access token has less "
                                                  "than this left")
    audience_parameter: Literal["resource", "audience"] = Field(
        "resource", description="how a refresh asks for a token for one audience: resource "
                                "(RFC 8707: glewlwyd, Authlete, ...) or audience (INDIGO IAM, "
                                "Auth0)")
    write_back: bool = Field(False, description="write rotated refresh tokens back to the "
                                                "hub's auth_state (needs admin:users!user=)")
    hub_timeout: Duration = Field(10.0, description="longest wait for one hub request")
    port: Port = Field(DEFAULT_PORT,
                       description="port for /token, /v1/token, /healthz, /metrics")
    metrics_port: int = Field(0, ge=0, le=65535,
                              description="a port on all addresses serving /metrics alone, "
                                          "for Prometheus outside the pod (the alerts in "
                                          "deploy/metrics/prometheus); 0: none")

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name, url in (("JUPYTERHUB_API_URL", self.api_url),
                          ("TOKENHELPER_OIDC_ISSUER", self.oidc_issuer)):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{name}={url!r} must be an http(s) URL")
        self.api_token = secret_from(self.api_token, self.api_token_file, "TOKENHELPER_API_TOKEN")
        self.client_secret = secret_from(self.client_secret, self.client_secret_file,
                                         "TOKENHELPER_CLIENT_SECRET")
        ids = self.isolation_ids()
        if ids is not None and self.uid is not None and self.uid != ids[0]:
            raise ValueError(f"TOKENHELPER_UID={self.uid} differs from TOKENHELPER_RUN_AS "
                             f"{self.run_as!r}: the files it writes are the run_as user's")
        return self

    @property
    def owner_uid(self) -> int:
        """Whose the token file and the socket are: the notebook user's."""
        ids = self.isolation_ids()
        if self.uid is not None:
            return self.uid
        return ids[0] if ids is not None else os.geteuid()

    @property
    def agent_socket(self) -> Path:
        """The oidc-agent compatible socket: ``OIDC_SOCK`` in the notebook."""
        return self.run_dir / "oidc-agent.sock"

    @property
    def bearer_token_file(self) -> Path:
        """WLCG bearer token discovery: ``$XDG_RUNTIME_DIR/bt_u<uid>``."""
        return self.run_dir / f"bt_u{self.owner_uid}"
