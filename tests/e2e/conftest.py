"""End-to-end fixtures: a platform with two hosts on the local cloud, apps made and destroyed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_support import cli, cli_json, new_app


def _runners() -> list[dict[str, object]]:
    """Running, bootstrapped hosts that run dynos (not the add-on host)."""
    rows = cli_json("hosts")
    assert isinstance(rows, list)
    return [
        h for h in rows if h["state"] == "running" and h["bootstrapped"] and h["role"] == "runner"
    ]


@pytest.fixture(scope="session")
def fleet(local_cloud: object) -> list[dict[str, object]]:
    """The platform with at least two running, bootstrapped hosts (added when missing)."""
    cli("platform:init")
    hosts = _runners()
    if len(hosts) < 2:
        cli("hosts:add", "--count", str(2 - len(hosts)))
        hosts = _runners()
    assert len(hosts) >= 2
    return hosts  # type: ignore[return-value]


@pytest.fixture
def app_name(fleet: object) -> Iterator[str]:
    name = new_app("e2e")
    yield name
    cli("apps:destroy", "-a", name, "--confirm", name, check=False)
