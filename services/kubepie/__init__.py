"""kubepie: per-user web/WebDAV servers that run with the user's own uid and gids."""

# The modules other packages may import (tests/test_layout.py holds every import to it);
# the rest are this package's own.
__all__ = ["main", "pod_identity"]
