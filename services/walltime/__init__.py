"""walltime: counts down a server's time limit and stops it through the hub's REST API."""

# The modules other packages may import (tests/test_layout.py holds every import to it);
# the rest are this package's own.
__all__ = ["main"]
