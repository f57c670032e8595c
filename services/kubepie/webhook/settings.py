"""Settings of the kubepie admission webhook (``KUBEPIE_WEBHOOK_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import Port, ServiceSettings


class WebhookSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="KUBEPIE_WEBHOOK_", extra="ignore",
                                      populate_by_name=True)

    identity_public_key_file: Path = Field(description="PEM public key the gateway's pod "
                                                       "identities are checked with")
    tls_cert_file: Path = Field(description="serving certificate (PEM) the API server "
                                            "trusts (caBundle of the webhook configuration)")
    tls_key_file: Path = Field(description="its private key (PEM)")
    tls_reload_interval: float = Field(
        10.0, gt=0, le=3600,
        description="seconds between checks of the certificate files; a renewed pair "
                    "(cert-manager) serves new connections without a restart")
    host: str = Field("0.0.0.0", description="address to listen on (the API server calls "
                                             "it)")
    port: Port = Field(8443, description="HTTPS port for /mutate, /healthz, /metrics")
