"""tokenhelper: fresh OIDC access tokens for the notebook; the refresh token stays here."""

# The modules other packages may import (tests/test_layout.py holds every import to it);
# the rest are this package's own.
__all__ = ["arc", "main"]
