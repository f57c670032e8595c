"""One storage definition for the whole suite: the folders of a user (home, groups, data).

The notebook pod mounts them (hub hooks) and the user's file server serves them (kubepie),
from the same definition, so a notebook saved in JupyterLab is the file the same user reaches
over WebDAV.
"""

# The modules other packages may import (tests/test_layout.py holds every import to it);
# the rest are this package's own.
__all__ = ["definition"]
