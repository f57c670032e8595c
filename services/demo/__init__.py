"""``make demo``: the whole suite on one machine with its embedded defaults."""

# The modules other packages may import (tests/test_layout.py holds every import to it);
# the rest are this package's own.
__all__ = ["main"]
