# LXCFS from Debian, for deploy/lxcfs/daemonset.yaml. Build from the repository root:
#   docker build -f deploy/images/lxcfs.Dockerfile -t ghcr.io/jupyterhub-sidecars/lxcfs:5.0.3 .
# fuse3 brings fusermount3, which the DaemonSet's preStop uses to unmount cleanly.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends lxcfs=5.0.* fuse3=3.14.* \
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["lxcfs"]
CMD ["--foreground", "--enable-loadavg", "/var/lib/lxcfs"]
