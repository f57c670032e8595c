"""Settings of the kubepie gateway (``KUBEPIE_*``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.identity.settings import IdentitySettings
from services.kubepie.gateway.token_kind import AccessTokenCheck
from services.runtime.settings import (
    Duration,
    DurationOrZero,
    Port,
    ServiceSettings,
    secret_from,
)
from services.storage.definition import StorageDefinition

DEFAULT_PORT = 8780
# Without a storage file: each user's home folder on this machine, /home/<username>.
LOCAL_HOMES = {"volumes": [{"name": "homes", "hostPath": {"path": "/home"}}],
               "mounts": [{"name": "home", "volume": "homes", "subPath": "{username}"}]}
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA")


class GatewaySettings(ServiceSettings, IdentitySettings):
    model_config = SettingsConfigDict(env_prefix="KUBEPIE_", extra="ignore",
                                      populate_by_name=True)

    # -- identity provider -----------------------------------------------------------------
    oidc_issuer: str = Field(description="issuer URL; keys and endpoints come from "
                                         "<issuer>/.well-known/openid-configuration")
    client_id: str = Field(min_length=1, description="OIDC client id of the gateway (browser "
                                                     "login; the audience of id tokens)")
    client_secret: SecretStr | None = Field(
        None, description="OIDC client secret (or give KUBEPIE_CLIENT_SECRET_FILE)")
    client_secret_file: Path | None = Field(None, description="file holding the client secret")
    audiences: str = Field("", description="accepted 'aud' values of bearer tokens, comma-"
                                           "separated (default: the public URL, as RFC 8707 "
                                           "resource indicators name it; never the client id "
                                           "by default, which id tokens carry)")
    access_token_check: AccessTokenCheck = Field(
        "auto", description="how bearer JWTs must show they are access tokens, not id "
                            "tokens: auto (id-token marks refused, an access-token mark "
                            "needed), rfc9068 (typ at+jwt only) or off (docs/kubepie.md)")
    algorithms: str = Field("RS256,ES256,PS256", description="accepted JWT signature "
                                                             "algorithms (never none/HS*)")
    leeway: Duration = Field(30.0, description="clock skew allowed on exp/nbf/iat")
    opaque_tokens: Literal["reject", "introspection", "userinfo"] = Field(
        "reject", description="bearer tokens that are not JWTs: reject, or ask the provider "
                              "(RFC 7662 introspection or the userinfo endpoint)")
    token_cache: Duration = Field(60.0, description="how long an introspection/userinfo "
                                                    "answer is reused")
    scopes: str = Field("openid profile", description="scopes asked for at browser login")
    # -- web -------------------------------------------------------------------------------
    public_url: str = Field(description="URL users reach the gateway at, e.g. "
                                        "https://files.example.org (login redirect, cookies)")
    trust_forwarded: bool = Field(False, description="believe X-Forwarded-Host/-Proto (set "
                                                     "it behind an ingress, never when exposed)")
    session_secret: SecretStr | None = Field(
        None, description="secret signing session cookies, ≥ 32 characters, the same on "
                          "every replica (or give KUBEPIE_SESSION_SECRET_FILE)")
    session_secret_file: Path | None = Field(None, description="file holding that secret")
    session_lifetime: Duration = Field(8 * 3600.0, description="browser session length")
    port: Port = Field(DEFAULT_PORT, description="port for users, /healthz, /metrics (set "
                                                 "KUBEPIE_HOST=0.0.0.0 in a pod)")
    # -- access keys -----------------------------------------------------------------------
    key_store: Path = Field(Path("kubepie-keys.sqlite"), description="SQLite file of access "
                                                                     "keys (local backend)")
    key_max_lifetime: DurationOrZero = Field(365 * 86400.0, description="longest access key "
                                                                  "validity; 0: no limit")
    link_max_lifetime: Duration = Field(30 * 86400.0, gt=0, description="longest validity of "
                                        "a share link (read-only URL of a folder or file)")
    # -- file servers ----------------------------------------------------------------------
    backend: Literal["local", "kubernetes"] = Field("local", description="where file "
                                                    "servers run: local processes or pods")
    storage_file: Path | None = Field(None, description="YAML: the users' folders (volumes "
                                      "and mounts), the same definition as the hub's "
                                      "(docs/storage.md); default: each user's /home/"
                                      "<username> (local backend)")
    idle_timeout: Duration = Field(900.0, description="stop a user's file server after "
                                                      "this long without requests")
    start_timeout: Duration = Field(120.0, description="longest wait for a file server "
                                                       "to become ready")
    max_starting: int = Field(20, ge=1, le=1000, description="file servers started at once; "
                              "more first requests wait (within KUBEPIE_START_TIMEOUT), so a "
                              "crowd reaches the Kubernetes API this many at a time")
    authorize_reuse: DurationOrZero = Field(5.0, le=60.0, description="how long a proxy in front "
                                      "(nginx auth_request) may reuse an /_kubepie/authorize "
                                      "answer for the same credential (never past the "
                                      "credential's expiry); 0: ask every time")
    # -- kubernetes backend ----------------------------------------------------------------
    namespace: str = Field("", description="namespace of the file server pods (default: the "
                                           "gateway's own, from its service account)")
    kubeconfig: Path | None = Field(None, description="kubeconfig file (default: in-cluster "
                                                      "service account)")
    pod_image: str = Field("", description="file server image, e.g. "
                                           "registry.example.org/kubepie-fileserver:0.1.0")
    pod_port: int = Field(8770, ge=1, le=65535, description="port file server pods listen on")
    pod_memory_limit: str = Field("512Mi", description="memory limit of a file server pod")
    fileserver_processes: int = Field(1, ge=1, le=64, description="processes of each user's "
                                                                "file server on its port "
                                                                "(many small files: up to "
                                                                "the CPUs it may use)")
    identity_key_file: Path | None = Field(None, description="PEM private key signing pod "
                                                             "identities for the webhook")
    owner_deployment: str = Field("", description="the gateway's Deployment: owner of the "
                                                  "pods and key Secrets (garbage collection)")

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name, url in (("KUBEPIE_OIDC_ISSUER", self.oidc_issuer),
                          ("KUBEPIE_PUBLIC_URL", self.public_url)):
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise ValueError(f"{name}={url!r} must be an http(s) URL")
        public = urlsplit(self.public_url)
        if public.scheme == "http" and not _loopback(public.hostname or ""):
            raise ValueError(f"KUBEPIE_PUBLIC_URL={self.public_url!r}: plain http is only for "
                             "loopback; session cookies and passwords need https")
        self.client_secret = secret_from(self.client_secret, self.client_secret_file,
                                         "KUBEPIE_CLIENT_SECRET")
        self.session_secret = secret_from(self.session_secret, self.session_secret_file,
                                          "KUBEPIE_SESSION_SECRET")
        if len(self.session_secret.get_secret_value()) < 32:
            raise ValueError("KUBEPIE_SESSION_SECRET must have at least 32 characters")
        bad = set(self.algorithm_list) - set(ALGORITHMS)
        if bad or not self.algorithm_list:
            raise ValueError(f"KUBEPIE_ALGORITHMS: {', '.join(sorted(bad)) or 'empty'} not "
                             f"accepted; choose from {', '.join(ALGORITHMS)}")
        try:
            self._storage = (StorageDefinition.load(self.storage_file) if self.storage_file
                             else StorageDefinition.parse(LOCAL_HOMES))
        except ValueError as exc:
            raise ValueError(f"KUBEPIE_STORAGE_FILE: {exc}") from None
        if self.backend == "kubernetes":
            missing = [name for name, value in (
                ("KUBEPIE_POD_IMAGE", self.pod_image),
                ("KUBEPIE_STORAGE_FILE", self.storage_file),
                ("KUBEPIE_IDENTITY_KEY_FILE", self.identity_key_file)) if not value]
            if missing:
                raise ValueError(f"KUBEPIE_BACKEND=kubernetes needs {', '.join(missing)}")
        return self

    @property
    def algorithm_list(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.algorithms.split(",") if a.strip())

    @property
    def audience_list(self) -> tuple[str, ...]:
        values = tuple(a.strip() for a in self.audiences.split(",") if a.strip())
        return values or (self.public_url.rstrip("/"), self.public_url.rstrip("/") + "/")

    @property
    def storage(self) -> StorageDefinition:
        return self._storage

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.public_url).scheme == "https"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
