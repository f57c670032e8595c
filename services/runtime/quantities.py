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
