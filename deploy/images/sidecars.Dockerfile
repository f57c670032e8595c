# The sidecar image: walltime (and the other sidecars) as `jupyterhub-sidecars <service>`.
# Build from the repository root:
#   docker build -f deploy/images/sidecars.Dockerfile -t ghcr.io/jupyterhub-sidecars/sidecars:0.1.0 .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN pip install --no-cache-dir . \
    && rm -rf /src

WORKDIR /
# nobody: the pod spec sets runAsNonRoot, readOnlyRootFilesystem and drops all capabilities.
USER 65534:65534
ENTRYPOINT ["jupyterhub-sidecars"]
CMD ["--help"]
