from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from harness.hub import Hub, running_hub, stop_all_servers
from harness.issuer import Issuer
from harness.oidc import OidcProvider, running_provider
from harness.process_leaks import Tracker

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
    with running_hub(tmp_path_factory.mktemp("hub"), backstop=True) as instance:
        yield instance


@pytest.fixture
def own_hub(tmp_path: Path) -> Iterator[Hub]:
    """A hub of the test's own, for tests that stop and restart it."""
    instance = Hub(tmp_path / "hub")
    instance.start()
    yield instance
    if instance.process and instance.process.poll() is not None:
        instance.start()
    stop_all_servers(instance)
    instance.stop()


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OidcProvider]:
    """A fresh oidc-provider-mock (modules with a shared provider override this)."""
    with running_provider(tmp_path / "provider.log") as instance:
        yield instance


@pytest.fixture(scope="module")
def module_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """One oidc-provider-mock for all tests of a module (and its ``oidc_hub``)."""
    with running_provider(tmp_path_factory.mktemp("oidc") / "provider.log") as instance:
        yield instance


@pytest.fixture(scope="module")
def oidc_hub(tmp_path_factory: pytest.TempPathFactory, module_provider: OidcProvider
             ) -> Iterator[Hub]:
    """A hub of the module's own that logs users in through ``module_provider``."""
    with running_hub(tmp_path_factory.mktemp("oidc-hub"),
                     oidc_issuer=module_provider.issuer) as instance:
        yield instance


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    """A signing OIDC issuer on loopback (discovery, JWKS, introspection)."""
    server = Issuer()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()
