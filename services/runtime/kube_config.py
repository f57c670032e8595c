"""Where the Kubernetes API server is and how to authenticate to it, for the services that
talk to it (the metrics agent, the kubepie gateway)."""

from __future__ import annotations

from pathlib import Path

from kubernetes_asyncio import config


async def load_kube_config(kubeconfig: Path | None) -> None:
    """A kubeconfig file when one is given (running outside the cluster, or against the tests'
    API server), else the pod's service account (token, CA and address the kubelet mounts).
    Sets the client library's default configuration, which ``ApiClient()`` then uses."""
    if kubeconfig is not None:
        await config.load_kube_config(config_file=str(kubeconfig))
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
