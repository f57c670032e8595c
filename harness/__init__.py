"""The real parts the tests and benchmarks run against, and the doubles for what cannot run
here: a JupyterHub on loopback, OIDC providers (oidc-provider-mock, glewlwyd, a signing
issuer), the Kubernetes API server and a kubelet, NVML, cgroup trees, an nginx front, TLS,
podman images, litmus; and the tools lookup that makes a missing tool a failure in CI.

Type-checked like the services (``mypy`` covers ``services`` and ``harness``); ``tests/``
holds only tests."""
