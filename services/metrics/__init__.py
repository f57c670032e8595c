"""Usage metrics: a node agent for Prometheus and the in-pod reader behind the status bar."""

# The modules other packages may import (tests/test_layout.py holds every import to it);
# the rest are this package's own.
__all__ = ["dashboard", "main", "server_extension", "usage_command"]
