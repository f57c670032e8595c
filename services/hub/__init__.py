"""What runs inside JupyterHub (hooks, the demo's local spawner) and the hub REST client."""

# The modules other packages may import (tests/test_layout.py holds every import to it);
# the rest are this package's own.
__all__ = ["client", "hooks", "local_spawner"]
