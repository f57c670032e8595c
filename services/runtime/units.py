"""One unit convention for every size shown to a user: the status bar, ``usage``, the spawn
page and the docs all say the same thing for the same bytes.

Binary units labelled MB and GB — 1 MB = 2**20 bytes — because that is how JupyterHub and
KubeSpawner read the limits operators write (``mem_limit: 50G`` is 50 * 2**30 bytes) and how
the seed's status line shows a 50G limit: ``Mem: 450 / 51200 MB``. From 100 GB on, GB with one
decimal. Disk sizes switch to GB sooner, from 1 GB (``Disk: 3.2 / 10.0 GB``): a home folder
of a few GB in MB would be noise. The JupyterLab status bar implements the same rules
(labextension/src/format.ts); both are tested against one table, labextension/test/units.json.
"""

from __future__ import annotations

import math

MIB = 2**20
GIB = 2**30
GB_FROM = 100 * GIB  # the limit (or the value, without a limit) from which GB is used
DISK_GB_FROM = GIB   # the same for disk sizes


def format_pair(used: int | float, limit: int | float | None, gb_from: int = GB_FROM) -> str:
    """``450 / 51200 MB``, ``20.0 / 100.0 GB``, or ``97 MB`` without a limit."""
    big = (limit if limit is not None else used) >= gb_from
    label = "GB" if big else "MB"
    shown = [_show(value, big) for value in (used, limit) if value is not None]
    return f"{' / '.join(shown)} {label}"


def format_disk(used: int | float, limit: int | float | None) -> str:
    """``3.2 / 10.0 GB``; MB below 1 GB."""
    return format_pair(used, limit, DISK_GB_FROM)


def size_text(number: int | float) -> str:
    """A limit on its own, compact, for the spawn page: ``50GB``, ``512MB``, ``1.5GB``."""
    if number >= GIB:
        return f"{number / GIB:g}GB"
    return f"{number / MIB:g}MB"


def _show(value: int | float, big: bool) -> str:
    if big:
        return f"{math.floor(value / GIB * 10 + 0.5) / 10:.1f}"
    return str(math.floor(value / MIB + 0.5))  # half up, as JavaScript's Math.round
