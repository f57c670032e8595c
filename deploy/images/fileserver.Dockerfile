# kubepie's per-user file server: WebDAV/HTTPS with the user's own uid and gids.
# Runs as nobody unless the pod (set by kubepie's admission webhook) gives the user's uid/gid;
# it never serves as root. Build from the repository root:
#   docker build -f deploy/images/fileserver.Dockerfile -t ghcr.io/jupyterhub-sidecars/fileserver:0.1.0 .

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

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FILESERVER_HOST=0.0.0.0
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /
EXPOSE 8770
USER 65534:65534
ENTRYPOINT ["jupyterhub-sidecars", "kubepie", "fileserver"]
