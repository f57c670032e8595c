"""Where users' file servers run: local processes or Kubernetes pods."""
