"""What runs inside JupyterHub (hooks, the demo's local spawner) and the hub REST client."""
