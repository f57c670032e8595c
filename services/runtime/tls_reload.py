"""A serving certificate that follows its files: cert-manager renews it (about every 60 days
for a 90-day certificate) and kubelet swaps the Secret's files in place; a server that loaded
them once would present the expired certificate, and with ``failurePolicy: Fail`` the API
server would refuse every pod the webhook admits.

The listening socket keeps one ``ssl.SSLContext``; its SNI callback (called for every
ClientHello, with or without a server name) hands each new handshake the context of the
newest pair that loaded, so nothing restarts and open connections are untouched. A pair is
loaded into a fresh context first — loading into the live one would leave it with a new
certificate and the old key when they do not match. The files are
watched by (inode, mtime, size) of both — kubelet's atomic ``..data`` symlink swap changes
all three — and a pair that does not load (a key from one renewal, a certificate from the
next) is tried again at the next check while the old pair keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

log = logging.getLogger(__name__)


def _stamp(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_ino, info.st_mtime_ns, info.st_size


def _context_for(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class ReloadingCertificate:
    def __init__(self, cert_file: Path, key_file: Path, interval: float = 10.0) -> None:
        self.cert_file, self.key_file, self.interval = cert_file, key_file, interval
        self._stamps = self._current()
        self._serving = _context_for(cert_file, key_file)  # errors here stop the start
        self.context = _context_for(cert_file, key_file)   # the listening socket's
        self.context.sni_callback = self._choose

    def _choose(self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                _: ssl.SSLContext) -> None:
        connection.context = self._serving

    def _current(self) -> tuple[tuple[int, int, int], ...]:
        return _stamp(self.cert_file), _stamp(self.key_file)

    def check(self) -> bool:
        """Load the files again if they changed; True when a new pair now serves."""
        try:
            stamps = self._current()
        except OSError as exc:
            log.warning("serving certificate: cannot stat its files (%s); keeping the "
                        "loaded one", exc)
            return False
        if stamps == self._stamps:
            return False
        try:
            fresh = _context_for(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            log.warning("serving certificate changed but does not load yet (%s); keeping "
                        "the loaded one", exc)
            return False
        self._serving, self._stamps = fresh, stamps
        log.info("serving certificate reloaded from %s", self.cert_file)
        return True

    async def watch(self) -> None:
        """Check every ``interval`` seconds until cancelled (a file stat each: nothing)."""
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(self.check)
