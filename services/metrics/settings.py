"""Settings of the node agent (``jupyterhub-sidecars metrics``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.metrics.quantities import parse_per_unit
from services.runtime.settings import Port, ServiceSettings

DEFAULT_PORT = 9768
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

PerUnit = Annotated[dict[str, int], NoDecode, BeforeValidator(parse_per_unit)]


class AgentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="METRICS_", extra="ignore")

    source: Literal["auto", "kubernetes", "local"] = Field(
        "auto", description="where servers are found: kubernetes (pods on this node), local "
                            "(jupyterhub-singleuser processes on this machine), or auto "
                            "(kubernetes inside a cluster or with a kubeconfig, else local)")
    node_name: str = Field("", description="this node's name (downward API spec.nodeName); "
                                           "required for the kubernetes source")
    namespace: str = Field("", description="namespace of the user pods; empty = the agent's "
                                           "own namespace, * = all namespaces")
    label_selector: str = Field("component=singleuser-server",
                                description="selects JupyterHub user pods")
    kubeconfig: Path | None = Field(None, description="kubeconfig to use outside the cluster")
    cgroup_root: str = Field("/sys/fs/cgroup", description="the node's cgroup v2 hierarchy "
                                                           "(a read-only hostPath mount)")
    proc_root: str = Field("/proc", description="the node's /proc (needs hostPID)")
    gpu: bool = Field(True, description="read GPU memory through NVML when a GPU is present")
    gpu_memory_per_unit: PerUnit = Field(
        default_factory=dict,
        description="GPU memory one unit of an extended resource stands for, e.g. "
                    "mortalgpu/v100=1Gi,nvidia.com/mig-1g.10gb=10Gi (for the limit series)")
    port: Port = Field(DEFAULT_PORT, description="port for /metrics, /usage and /healthz")
    host: str = Field("0.0.0.0", description="address to listen on (Prometheus scrapes it "
                                             "from another pod)")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.kubeconfig is not None and not self.kubeconfig.is_file():
            raise ValueError(f"METRICS_KUBECONFIG={str(self.kubeconfig)!r} is not a file")
        if self.resolved_source() == "kubernetes":
            if not self.node_name:
                raise ValueError("METRICS_NODE_NAME is required for the kubernetes source "
                                 "(set it from the downward API: spec.nodeName)")
            if not self.namespace:
                try:
                    self.namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
                except OSError:
                    raise ValueError("METRICS_NAMESPACE is required outside a cluster "
                                     "(or * for all namespaces)") from None
        return self

    def resolved_source(self) -> str:
        if self.source != "auto":
            return self.source
        import os

        in_cluster = "KUBERNETES_SERVICE_HOST" in os.environ
        return "kubernetes" if in_cluster or self.kubeconfig else "local"
