"""Where users' file servers run: local processes or Kubernetes pods."""

# The modules other packages may import (tests/test_layout.py holds every import to it);
# the rest are the backends' own.
__all__ = ["kubernetes", "local"]
