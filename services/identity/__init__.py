"""One identity for the whole suite: OIDC claims → user name, uid, gid and groups.

The hub hooks (the notebook's securityContext, NSS entries, HOME) and kubepie (the file
server's ids, admission) map claims with the same code and the same setting names, so what a
user saves in JupyterLab and what the same user reaches over WebDAV have the same owner.
"""

# The modules other packages may import (tests/test_layout.py holds every import to it);
# the rest are this package's own.
__all__ = ["claims", "nss", "settings"]
