# LXCFS from Debian, for deploy/lxcfs/daemonset.yaml. Build from the repository root:
#   docker build -f deploy/images/lxcfs.Dockerfile -t ghcr.io/jupyterhub-sidecars/lxcfs:5.0.3 .
# DEBIAN_IMAGE: the base (the image tests give a debootstrapped Debian of the same release).
# fuse3 brings fusermount3, which the DaemonSet's preStop uses to unmount cleanly.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends lxcfs=5.0.* fuse3=3.14.* \
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["lxcfs"]
CMD ["--foreground", "--enable-loadavg", "/var/lib/lxcfs"]
