"""deploy/metrics/prometheus/alerts.rules.yml: valid for Prometheus (`promtool check rules`),
each alert firing for what it is about and not for its neighbours (`promtool test rules`
with tests/promtool/alerts_test.yml), and every series it reads one that this project
exports — a renamed metric would otherwise leave an alert that can never fire."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.tools import REPO, require_tool
from services.contract import METRIC_PREFIX

RULES = REPO / "deploy" / "metrics" / "prometheus" / "alerts.rules.yml"
FIXTURES = REPO / "tests" / "promtool" / "alerts_test.yml"
PREFIX = METRIC_PREFIX


def promtool() -> str:
    return require_tool("promtool", REPO / ".tools" / "prometheus" / "usr" / "bin")


def exported_names() -> set[str]:
    """Metric names in the services' code, as ``{METRIC_PREFIX}_…`` f-strings or literals."""
    names = set()
    for path in (REPO / "services").rglob("*.py"):
        text = path.read_text()
        names.update(f"{PREFIX}_{m}" for m in re.findall(r'\{METRIC_PREFIX\}_([a-z_]+)"', text))
        names.update(re.findall(rf'"({PREFIX}_[a-z_]+)"', text))
    return names


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_each_alert_fires_for_its_case_and_only_then() -> None:
    result = subprocess.run([promtool(), "test", "rules", str(FIXTURES)], capture_output=True,
                            text=True, check=False, cwd=FIXTURES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", FIXTURES.read_text()))
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"]
              for r in g["rules"]}
    assert alerts == tested  # no alert without a test


def test_the_fixtures_can_fail(tmp_path: Path) -> None:
    """The same fixtures against a rule with a wrong threshold: promtool reports it."""
    broken = tmp_path / "rules.yml"
    broken.write_text(RULES.read_text().replace("> 0.9\n        for: 5m", "> 0.99\n        for: 5m",
                                                1))
    fixtures = tmp_path / "test.yml"
    fixtures.write_text(FIXTURES.read_text().replace(
        "../../deploy/metrics/prometheus/alerts.rules.yml", str(broken)))
    result = subprocess.run([promtool(), "test", "rules", str(fixtures)], capture_output=True,
                            text=True, check=False)
    assert result.returncode != 0
    assert "JupyterServerNearMemoryLimit" in result.stdout + result.stderr


def test_every_series_the_rules_read_is_exported() -> None:
    names = exported_names()
    used = set(re.findall(rf"{PREFIX}_[a-z_]+", RULES.read_text()))
    assert used, "no series found in the rules"
    for name in sorted(used):
        assert name in names or name.removesuffix("_total") in names, name


@pytest.mark.parametrize("name", ["jupyterhub_sidecars_container_memory_working_set_bytes",
                                  "jupyterhub_sidecars_kubepie_gateway_file_server_starts"])
def test_the_name_scan_sees_both_spellings(name: str) -> None:
    assert name in exported_names()
