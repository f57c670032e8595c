"""What every service shares: settings, JSON logs, and the web app with /healthz and /metrics."""
