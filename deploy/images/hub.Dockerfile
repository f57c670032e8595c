# The Zero to JupyterHub hub image with the hooks and the backstop installed.
# Build from the repository root:
#   docker build -f deploy/images/hub.Dockerfile -t ghcr.io/jupyterhub-sidecars/k8s-hub:0.1.0 .
# The wheel carries the JupyterLab extension, built with Node.js; only the wheel moves on.
FROM python:3.11-slim-bookworm AS wheel
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs=18.* npm=9.* \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md hatch_build.py ./
COPY services ./services
COPY labextension ./labextension
COPY jupyter-config ./jupyter-config
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM quay.io/jupyterhub/k8s-hub:4.2.0
USER 0
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels

WORKDIR /srv/jupyterhub
# jovyan, as in the base image
USER 1000
