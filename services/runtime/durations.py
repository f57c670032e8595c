"""Human durations (``90s``, ``30m``, ``1h30m``, ``1d``) as operators write them in values.yaml."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str | float | int, *, allow_zero: bool = False) -> float:
    """Return seconds for ``text``; a bare number means seconds (``0`` only where zero has
    a meaning of its own: ``allow_zero``).

    Raises ValueError with a message fit to show an operator.
    """
    if isinstance(text, bool):
        raise ValueError("expected a duration like 90s, 30m, 12h or 1d")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        spec = text.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", spec):
            seconds = float(spec)
        else:
            parts = _PART.findall(spec)
            if not parts or "".join(n + u for n, u in parts) != spec:
                raise ValueError("not a duration (use e.g. 90s, 30m, 12h, 1d)")
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError("must be longer than zero")
    return seconds


def parse_duration_list(text: str | list[str] | tuple[float, ...]) -> tuple[float, ...]:
    """``"10m,1m"`` → ``(600.0, 60.0)``, sorted longest first, duplicates dropped."""
    if isinstance(text, str):
        items: list[str | float] = [p for p in (s.strip() for s in text.split(",")) if p]
    else:
        items = list(text)
    return tuple(sorted({parse_duration(i) for i in items}, reverse=True))


def format_duration(seconds: float) -> str:
    """Short form for logs and UIs: ``1h30m``, ``2m``, ``45s``."""
    total = round(seconds)
    if total <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
