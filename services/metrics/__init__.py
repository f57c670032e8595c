"""Usage metrics: a node agent for Prometheus and the in-pod reader behind the status bar."""
