# The Zero to JupyterHub hub image with the hooks and the backstop installed.
# Build from the repository root:
#   docker build -f deploy/images/hub.Dockerfile -t ghcr.io/jupyterhub-sidecars/k8s-hub:0.1.0 .
FROM quay.io/jupyterhub/k8s-hub:4.2.0

USER 0
WORKDIR /tmp/jupyterhub-sidecars
COPY pyproject.toml README.md ./
COPY services ./services
RUN pip install --no-cache-dir . \
    && rm -rf /tmp/jupyterhub-sidecars

WORKDIR /srv/jupyterhub
# jovyan, as in the base image
USER 1000
