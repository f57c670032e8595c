"""The per-user WebDAV/HTTPS file server (``jupyterhub-sidecars kubepie fileserver``)."""
