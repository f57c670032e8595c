"""Byte quantities the way Kubernetes writes them: ``10Gi``, ``512Mi``, ``1G``, ``1500``."""

from __future__ import annotations

import re

_SUFFIXES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|M|G|T|)\s*$")


def parse_bytes(text: str) -> int:
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a byte quantity (e.g. 10Gi, 512Mi, 1G, 1500)")
    return int(float(match.group(1)) * _SUFFIXES[match.group(2)])


_SPAWNER_SUFFIXES = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40,
                     "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_SPAWNER_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|)\s*$")


def parse_spawner_bytes(text: str) -> int:
    """Sizes the way JupyterHub's ``ByteSpecification`` reads a profile's ``mem_limit``:
    ``50G`` is 50 * 2**30 bytes (``50Gi`` too), so a profile's sizes agree with each other."""
    match = _SPAWNER_QUANTITY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (e.g. 10G, 10Gi, 500M, 1500)")
    return int(float(match.group(1)) * _SPAWNER_SUFFIXES[match.group(2)])
