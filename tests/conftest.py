from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub import Hub
from tests.oidc import OidcProvider
from tests.process_leaks import Tracker

_tracker = Tracker()


def pytest_configure(config: pytest.Config) -> None:
    _tracker.start()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _tracker.test_starts(item.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every fixture is torn down by now: a process of ours still running is a leak."""
    leaks = _tracker.leaks()
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "processes outlived the tests (killed now):\n  " + "\n  ".join(leaks)
        if reporter is not None:
            reporter.write_sep("=", "process leaks", red=True)
            reporter.write_line(message)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One hub (with the walltime backstop service) shared by the integration tests."""
    instance = Hub(tmp_path_factory.mktemp("hub"), backstop=True)
    instance.start()
    yield instance
    _stop_all_servers(instance)
    instance.stop()


@pytest.fixture
def own_hub(tmp_path: Path) -> Iterator[Hub]:
    """A hub of the test's own, for tests that stop and restart it."""
    instance = Hub(tmp_path / "hub")
    instance.start()
    yield instance
    if instance.process and instance.process.poll() is not None:
        instance.start()
    _stop_all_servers(instance)
    instance.stop()


def _stop_all_servers(hub: Hub) -> None:
    response = hub.api("GET", "/users", params={"state": "active"})
    if response.status_code != 200:
        return
    for user in response.json():
        for name in user.get("servers", {}):
            hub.api("DELETE", hub.server_path(user["name"], name))


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OidcProvider]:
    """A fresh oidc-provider-mock (modules with a shared provider override this)."""
    instance = OidcProvider(tmp_path / "provider.log")
    instance.start()
    yield instance
    instance.stop()
