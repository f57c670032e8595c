"""``jupyterhub-sidecars usage``: "nvidia-smi for my container only", with the walltime.

Run inside a session (a terminal or a notebook cell with ``!``). ``--json`` prints what the
status bar's API returns, for scripts.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from services.metrics.status import StatusReader
from services.runtime.units import format_disk, format_pair


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(args: argparse.Namespace) -> int:
    reader = StatusReader.from_environment()
    status = reader.read_usage(wait_for_disk=True)
    status["walltime"] = reader.read_walltime_sync()
    print(json.dumps(status, indent=2) if args.json else render(status))
    return 0


def render(status: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    memory, cpu = status["memory"], status["cpu"]
    rows.append(("Memory", _used_of(memory["used_bytes"], memory["limit_bytes"]),
                 f"peak {_mb(memory['peak_bytes'])}" if memory.get("peak_bytes") else ""))
    cpu_used = f"{cpu['percent']:.0f} %" if cpu.get("percent") is not None else "-"
    cpu_limit = f" of {cpu['limit']:g} CPUs" if cpu.get("limit") else ""
    rows.append(("CPU", cpu_used + cpu_limit, f"{cpu['usage_seconds']:.1f} s used"))
    gpu = status.get("gpu")
    if gpu:
        rows.append(("GPU memory", _used_of(gpu["used_bytes"], gpu["limit_bytes"]),
                     "this container's processes" if gpu["attribution"] == "process"
                     else "whole device(s)"))
        for device in gpu["devices"]:
            rows.append((f"  GPU {device['index']}", device["name"],
                         f"{_mb(device['used_bytes'])} of {_mb(device['total_bytes'])} used "
                         "by everyone"))
        for process in gpu["processes"]:
            rows.append((f"  pid {process['pid']}", process["name"] or "?",
                         _mb(process["used_bytes"])))
    disk = status.get("disk")
    if disk:
        rows.append(_disk_row(disk))
    walltime = status.get("walltime")
    idle = (walltime or {}).get("idle")
    if walltime and "remaining" in walltime:
        rows.append(("Walltime", f"{_minutes(walltime['elapsed'])} / "
                                 f"{_minutes(walltime['limit'])}",
                     f"{_minutes(walltime['remaining'])} left, stops at {walltime['deadline']}"))
    elif walltime and not idle:
        rows.append(("Walltime", walltime.get("state", "unknown"), ""))
    else:
        rows.append(("Walltime", "no limit", ""))
    if idle:
        rows.append(("Idle stop", f"after {_minutes(idle['limit'])} idle",
                     f"idle for {_minutes(idle['idle_for'])}, "
                     f"stops in {_minutes(idle['remaining'])} without activity"))
    width = max(len(r[0]) for r in rows)
    middle = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:<{middle}}  {c}".rstrip() for a, b, c in rows)


DISK_SOURCES = {"cephfs": "CephFS quota", "project-quota": "project quota",
                "volume": "own volume", "scan": "counted"}


def _disk_row(disk: dict[str, Any]) -> tuple[str, str, str]:
    if disk.get("state") != "ready":
        return ("Disk", disk.get("state", "unknown"), disk.get("path", ""))
    used, limit = disk["used_bytes"], disk["limit_bytes"]
    shown = format_disk(used, limit)
    if not disk.get("complete", True):
        shown = f"at least {shown}"
    share = f" ({100 * used / limit:.0f} %)" if limit else " (no limit)"
    how = DISK_SOURCES.get(disk["source"], disk["source"])
    if disk["source"] == "scan" and disk.get("files") is not None:
        how += f" {disk['files']:,} entries in {disk['scan_seconds']:.1f} s"
    return ("Disk", shown + share, f"{disk['path']}, {how}")


def _mb(value: int | None) -> str:
    return "?" if value is None else format_pair(value, None)


def _used_of(used: int, limit: int | None) -> str:
    """The status bar's numbers (services/runtime/units.py), with the share."""
    if limit is None:
        return f"{format_pair(used, None)} (no limit)"
    return f"{format_pair(used, limit)} ({100 * used / limit:.0f} %)"


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
