"""The operators' Grafana dashboard, generated from code (grafanalib), never edited as JSON.

``python -m services.metrics.dashboard > deploy/metrics/grafana/jupyterhub-sidecars.json``
writes what is committed; tests/test_dashboard.py checks that the file is this output and that
every panel's query returns data from a real Prometheus scraping the agent, the walltime
backstop and the kubepie gateway. Needs grafanalib (the ``dashboard`` extra; ``test`` has it
too), not the services.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

UID = "jupyterhub-sidecars"
DATASOURCE = "${DS_PROMETHEUS}"
SERVER = 'container="notebook", user=~"$user"'


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[tuple[str, str], ...]   # (PromQL, legend)
    unit: str
    kind: str = "timeseries"               # or "stat"


PANELS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    ("User servers", (
        Panel("Servers by profile", "Running notebook containers per profile.",
              ((f"count by (profile) (jupyterhub_sidecars_container_memory_working_set_bytes"
                f"{{{SERVER}}})", "{{profile}}"),), "short", "stat"),
        Panel("Memory working set", "What the OOM killer goes by, per server.",
              ((f"sum by (user, server) (jupyterhub_sidecars_container_memory_working_set_bytes"
                f"{{{SERVER}}})", "{{user}} {{server}}"),), "bytes"),
        Panel("Memory against the limit", "Working set / limit; the alert fires above 90 %.",
              ((f"max by (user, server) (jupyterhub_sidecars_container_memory_working_set_bytes"
                f"{{{SERVER}}} / jupyterhub_sidecars_container_spec_memory_limit_bytes"
                f"{{{SERVER}}})", "{{user}} {{server}}"),), "percentunit"),
        Panel("CPU", "CPUs used per server (5-minute rate).",
              ((f"sum by (user, server) (rate(jupyterhub_sidecars_container_cpu_usage_seconds"
                f"_total{{{SERVER}}}[5m]))", "{{user}} {{server}}"),), "short"),
        Panel("CPU throttling", "Share of CFS periods in which a server hit its CPU limit.",
              ((f"sum by (user, server) (rate(jupyterhub_sidecars_container_cpu_cfs_throttled"
                f"_periods_total{{{SERVER}}}[5m])) / sum by (user, server) (rate("
                f"jupyterhub_sidecars_container_cpu_cfs_periods_total{{{SERVER}}}[5m]))",
                "{{user}} {{server}}"),), "percentunit"),
        Panel("Memory pressure", "Time tasks waited for memory (PSI), per server.",
              ((f"sum by (user, server) (rate(jupyterhub_sidecars_container_pressure_memory"
                f"_waiting_seconds_total{{{SERVER}}}[5m]))", "{{user}} {{server}}"),), "s"),
        Panel("OOM kills (1 h)", "Processes the kernel killed for memory, per server.",
              ((f"sum by (user, server) (increase(jupyterhub_sidecars_container_oom_events"
                f"_total{{{SERVER}}}[1h]))", "{{user}} {{server}}"),), "short"),
    )),
    ("GPUs", (
        Panel("GPU memory", "GPU memory of each server's processes (NVML), per device.",
              (('sum by (user, server, gpu) (jupyterhub_sidecars_container_accelerator_memory'
                '_used_bytes{user=~"$user"})', "{{user}} {{server}} GPU {{gpu}}"),), "bytes"),
        Panel("GPU memory against the share", "Used / the profile's GPU memory share.",
              (('sum by (user, server) (jupyterhub_sidecars_container_accelerator_memory_used'
                '_bytes{user=~"$user"}) / max by (user, server) (jupyterhub_sidecars_container'
                '_spec_accelerator_memory_limit_bytes{user=~"$user"})', "{{user}} {{server}}"),),
              "percentunit"),
    )),
    ("Walltime", (
        Panel("Walltime left", "Seconds until each server is stopped.",
              (('min by (user, server) (jupyterhub_sidecars_walltime_remaining_seconds'
                '{user=~"$user"})', "{{user}} {{server}}"),), "s"),
        Panel("Backstop stops (1 h)", "Servers the backstop stopped because their walltime "
              "container did not.",
              (("sum(increase(jupyterhub_sidecars_walltime_backstop_stops_total[1h]))",
                "stops"),), "short", "stat"),
    )),
    ("kubepie and the agents", (
        Panel("Gateway requests", "Requests per second by status code.",
              (("sum by (code) (rate(jupyterhub_sidecars_kubepie_gateway_requests_total[5m]))",
                "{{code}}"),), "reqps"),
        Panel("File servers", "File servers each gateway routes to, and failed starts.",
              (("sum(jupyterhub_sidecars_kubepie_gateway_file_servers)", "running"),
               ("sum(increase(jupyterhub_sidecars_kubepie_gateway_file_server_start_failures"
                "_total[1h]))", "failed starts (1 h)")), "short"),
        Panel("Agent read time", "Time each node agent's last scrape spent reading.",
              (("max by (instance) (jupyterhub_sidecars_metrics_read_seconds)",
                "{{instance}}"),), "s"),
    )),
)


def queries() -> list[str]:
    """Every PromQL expression of the dashboard, ``$user`` as Grafana's "All" expands it."""
    return [q.replace("$user", ".*") for _, panels in PANELS for p in panels
            for q, _ in p.queries]


def build() -> dict[str, Any]:
    from grafanalib import core as g  # type: ignore[import-untyped]  # generation only
    from grafanalib._gen import DashboardEncoder  # type: ignore[import-untyped]

    rows: list[Any] = []
    y = 0
    for title, panels in PANELS:
        rows.append(g.RowPanel(title=title, gridPos=g.GridPos(h=1, w=24, x=0, y=y)))
        y += 1
        for index, panel in enumerate(panels):
            width = 8
            position = g.GridPos(h=8, w=width, x=(index % 3) * width, y=y + (index // 3) * 8)
            targets = [g.Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + n),
                                datasource=DATASOURCE)
                       for n, (expr, legend) in enumerate(panel.queries)]
            common = {"title": panel.title, "description": panel.description,
                      "dataSource": DATASOURCE, "targets": targets, "gridPos": position}
            if panel.kind == "stat":
                rows.append(g.Stat(format=panel.unit, reduceCalc="lastNotNull", **common))
            else:
                rows.append(g.TimeSeries(unit=panel.unit, **common))
        y += 8 * ((len(panels) + 2) // 3)
    dashboard = g.Dashboard(
        title="JupyterHub sidecars", uid=UID, timezone="browser", refresh="30s",
        description="Per-server memory, CPU, GPU memory and walltime from the node agents; "
                    "the walltime backstop and kubepie (docs/metrics.md).",
        tags=["jupyterhub", "jupyterhub-sidecars"],
        inputs=[g.DataSourceInput(name="DS_PROMETHEUS", label="Prometheus",
                                  pluginId="prometheus", pluginName="Prometheus")],
        templating=g.Templating(list=[g.Template(
            name="user", label="User", dataSource=DATASOURCE, includeAll=True, multi=True,
            default="$__all", allValue=".*",
            query="label_values(jupyterhub_sidecars_container_memory_working_set_bytes, user)")]),
        panels=rows,
    ).auto_panel_ids()
    encoded: dict[str, Any] = json.loads(json.dumps(dashboard.to_json_data(),
                                                    cls=DashboardEncoder))
    return encoded


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
