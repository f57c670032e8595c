# Stand-in for quay.io/jupyterhub/k8s-hub:4.2.0 (no registry is reachable from the tests):
# the same JupyterHub, KubeSpawner and OAuthenticator on Debian's Python, user jovyan (1000),
# /srv/jupyterhub. Built offline from the wheelhouse mounted at /wheelhouse.
ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE}
RUN pip install --no-cache-dir --no-index --find-links /wheelhouse \
        jupyterhub==5.3.0 jupyterhub-kubespawner==7.0.0 oauthenticator==17.3.0 \
    && echo 'jovyan:x:1000:1000::/home/jovyan:/bin/sh' >> /etc/passwd \
    && echo 'jovyan:x:1000:' >> /etc/group \
    && mkdir -p /srv/jupyterhub && chown 1000:1000 /srv/jupyterhub
WORKDIR /srv/jupyterhub
USER 1000
