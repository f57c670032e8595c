"""The WLCG bearer token file: replaced atomically, readable by the notebook user only."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path


def prepare_run_dir(run_dir: Path, uid: int) -> None:
    """Create the shared folder, 0700 and the user's where we may make it so.

    A Kubernetes emptyDir arrives root-owned and world-writable, and a non-root sidecar cannot
    change that; the token file itself is always 0600 and the user's, which is what counts.
    """
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.geteuid() == 0 and run_dir.stat().st_uid != uid:
        os.chown(run_dir, uid, -1)
    if run_dir.stat().st_uid == os.geteuid() or os.geteuid() == 0:
        run_dir.chmod(0o700)


def write_token(path: Path, token: str, uid: int) -> None:
    """Write ``token`` next to ``path`` with mode 0600, then rename it into place.

    A reader sees the old token or the new one, never a partial file.
    """
    fd, temporary = tempfile.mkstemp(prefix=".bt-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        if os.fstat(fd).st_uid != uid:
            os.fchown(fd, uid, -1)
        os.write(fd, token.encode() + b"\n")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        Path(temporary).unlink()
        raise
    os.close(fd)
    Path(temporary).replace(path)


async def write_token_async(path: Path, token: str, uid: int) -> None:
    await asyncio.to_thread(write_token, path, token, uid)
