# The sidecar image: walltime (and the other sidecars) as `jupyterhub-sidecars <service>`.
# Build from the repository root:
#   docker build -f deploy/images/sidecars.Dockerfile -t ghcr.io/jupyterhub-sidecars/sidecars:0.1.0 .
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
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels

WORKDIR /
# nobody: the pod spec sets runAsNonRoot, readOnlyRootFilesystem and drops all capabilities.
USER 65534:65534
ENTRYPOINT ["jupyterhub-sidecars"]
CMD ["--help"]
