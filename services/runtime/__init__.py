"""What every service shares: settings, JSON logs, and the web app with /healthz and /metrics."""

# Shared by design: every module is for the other packages (tests/test_layout.py checks the
# other packages' __all__ against their imports).
__all__ = ["durations", "kube_config", "kube_watch", "logs", "parent_death", "privileges",
           "quantities", "retry", "settings", "sidecar_urls", "tls_reload", "units", "webapp"]
