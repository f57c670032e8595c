# A notebook image with what the sidecars add inside the user's container: the status API
# (a Jupyter server extension, enabled by the config file the package installs), the `usage`
# command, and the ARC token profile. Build from the repository root:
#   docker build -f deploy/images/notebook.Dockerfile -t ghcr.io/jupyterhub-sidecars/notebook:0.1.0 .
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

FROM quay.io/jupyter/base-notebook:2025-01-06
USER 0
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl \
    && jupyterhub-sidecars arc-profile > /etc/profile.d/arc-token.sh \
    && rm -rf /tmp/wheels

WORKDIR /home/jovyan
USER 1000
