# A notebook image with what the sidecars add inside the user's container: the status API
# (a Jupyter server extension, enabled by the config file the package installs), the `usage`
# command, and the ARC token profile. Build from the repository root:
#   docker build -f deploy/images/notebook.Dockerfile -t ghcr.io/jupyterhub-sidecars/notebook:0.1.0 .
FROM quay.io/jupyter/base-notebook:2025-01-06

USER 0
WORKDIR /tmp/jupyterhub-sidecars
COPY pyproject.toml README.md ./
COPY services ./services
COPY jupyter-config ./jupyter-config
RUN pip install --no-cache-dir . \
    && jupyterhub-sidecars arc-profile > /etc/profile.d/arc-token.sh \
    && rm -rf /tmp/jupyterhub-sidecars

WORKDIR /home/jovyan
USER 1000
