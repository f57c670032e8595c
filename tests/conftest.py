from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub import Hub
from tests.oidc import OidcProvider


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
