# Stand-in for quay.io/jupyter/base-notebook (no registry is reachable from the tests):
# JupyterLab and jupyterhub-singleuser on Debian's Python, user jovyan (1000) with its home.
# Built offline from the wheelhouse mounted at /wheelhouse.
ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE}
RUN pip install --no-cache-dir --no-index --find-links /wheelhouse \
        jupyterhub==5.3.0 'jupyterlab>=4.2,<5' \
    && echo 'jovyan:x:1000:100::/home/jovyan:/bin/bash' >> /etc/passwd \
    && mkdir -p /home/jovyan && chown 1000:100 /home/jovyan
WORKDIR /home/jovyan
USER 1000
