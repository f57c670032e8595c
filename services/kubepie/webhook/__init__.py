"""The admission webhook: a file server pod runs only with a gateway-signed identity."""

# The modules other packages may import (tests/test_layout.py holds every import to it);
# the rest are this package's own.
__all__ = ["main"]
