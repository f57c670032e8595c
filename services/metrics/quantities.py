"""GPU memory: the notebook's limit, and what a unit of an extended resource stands for."""

from __future__ import annotations

from services.runtime.quantities import parse_bytes

__all__ = ["parse_bytes", "parse_per_unit"]

# The notebook's GPU memory limit, from a profile's ``gpu_memory`` (set by the hooks).


def parse_per_unit(text: str | dict[str, int]) -> dict[str, int]:
    """``resource=quantity,…``: GPU memory each unit of an extended resource stands for."""
    if isinstance(text, dict):
        return text
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        resource, sep, quantity = item.partition("=")
        if not sep or not resource.strip():
            raise ValueError(f"{item!r}: expected resource=quantity, e.g. mortalgpu/v100=1Gi")
        mapping[resource.strip()] = parse_bytes(quantity)
    return mapping
