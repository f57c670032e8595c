"""The admission webhook follows its certificate: renewed files (cert-manager renewing, kubelet
swapping the Secret's files through its ``..data`` symlink) serve new connections without a
restart, and a half-written pair never replaces a working one."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from harness.hub import free_port
from harness.tls import serving_certificate
from harness.tools import VENV_BIN, stop_process
from services.kubepie.pod_identity import generate_key

pytestmark = pytest.mark.slow


def kubelet_swap(volume: Path, source: Path, generation: int) -> None:
    """What kubelet's atomic writer does for a Secret volume: the files go into a new
    timestamped folder, ``..data`` is re-pointed in one rename, the names stay links."""
    folder = volume / f"..2026_11_30_{generation:02}"
    folder.mkdir()
    shutil.copy(source / "cert.pem", folder / "tls.crt")
    shutil.copy(source / "key.pem", folder / "tls.key")
    (volume / "..data_tmp").symlink_to(folder.name)
    (volume / "..data_tmp").rename(volume / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (volume / name).is_symlink():
            (volume / name).symlink_to(f"..data/{name}")


def handshake(port: int, ca: Path) -> str:
    """The serving certificate's issuer as a client trusting only ``ca`` sees it."""
    context = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(verify=context, timeout=5) as client:
        response = client.get(f"https://127.0.0.1:{port}/healthz")
        assert response.status_code == 200
        return "ok"


def wait_for(port: int, ca: Path, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, "the webhook exited"
        try:
            handshake(port, ca)
            return
        except (httpx.TransportError, ssl.SSLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_renewed_certificate_serves_without_a_restart(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    ca1, _, _ = serving_certificate(first)
    ca2, _, _ = serving_certificate(second)  # a new CA too: what caBundle injection follows
    volume = tmp_path / "secret"
    volume.mkdir()
    kubelet_swap(volume, first, 1)
    _, public = generate_key()
    (tmp_path / "identity.pub").write_text(public)
    port = free_port()
    log = (tmp_path / "webhook.log").open("wb")
    webhook = subprocess.Popen(
        [str(VENV_BIN / "jupyterhub-sidecars"), "kubepie", "webhook"],
        env={**os.environ,
             "KUBEPIE_WEBHOOK_IDENTITY_PUBLIC_KEY_FILE": str(tmp_path / "identity.pub"),
             "KUBEPIE_WEBHOOK_TLS_CERT_FILE": str(volume / "tls.crt"),
             "KUBEPIE_WEBHOOK_TLS_KEY_FILE": str(volume / "tls.key"),
             "KUBEPIE_WEBHOOK_TLS_RELOAD_INTERVAL": "0.3",
             "KUBEPIE_WEBHOOK_HOST": "127.0.0.1", "KUBEPIE_WEBHOOK_PORT": str(port)},
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(port, ca1, webhook)
        with pytest.raises((httpx.ConnectError, ssl.SSLError)):
            handshake(port, ca2)  # the new CA does not trust the old certificate

        # A broken renewal: the new certificate with the old key. The old pair keeps serving.
        broken = tmp_path / "broken"
        broken.mkdir()
        shutil.copy(second / "cert.pem", broken / "cert.pem")
        shutil.copy(first / "key.pem", broken / "key.pem")
        kubelet_swap(volume, broken, 2)
        time.sleep(1.2)
        handshake(port, ca1)

        kubelet_swap(volume, second, 3)
        wait_for(port, ca2, webhook, timeout=10)  # a client trusting only the new CA
        with pytest.raises((httpx.ConnectError, ssl.SSLError)):
            handshake(port, ca1)
        assert webhook.poll() is None  # the same process throughout
    finally:
        stop_process(webhook, 10)
        log.close()
    text = (tmp_path / "webhook.log").read_text()
    assert "does not load yet" in text and "serving certificate reloaded" in text
