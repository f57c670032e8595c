"""The per-user WebDAV/HTTPS file server (``jupyterhub-sidecars kubepie fileserver``)."""

# The modules other packages may import (tests/test_layout.py holds every import to it);
# the rest are this package's own.
__all__ = ["main", "mounts", "shares"]
