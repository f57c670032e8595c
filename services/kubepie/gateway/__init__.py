"""The kubepie gateway: who is asking (OIDC, access keys, share links), their file server
started on demand, and the proxy or nginx auth_request in front of it."""

# The modules other packages may import (tests/test_layout.py holds every import to it);
# the rest are this package's own.
__all__ = ["accesskeys", "main"]
