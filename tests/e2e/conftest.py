"""End-to-end fixtures: a platform with two hosts on the local cloud, apps made and destroyed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_support import cli, cli_json, new_app


@pytest.fixture(scope="session")
def fleet(local_cloud: object) -> list[dict[str, object]]:
    """The platform with at least two running, bootstrapped hosts (added when missing)."""
    cli("platform:init")
    hosts = [h for h in cli_json("hosts") if h["state"] == "running" and h["bootstrapped"]]  # type: ignore[union-attr,index]
    if len(hosts) < 2:
        cli("hosts:add", "--count", str(2 - len(hosts)))
        hosts = [h for h in cli_json("hosts") if h["state"] == "running" and h["bootstrapped"]]  # type: ignore[union-attr,index]
    assert len(hosts) >= 2
    return hosts  # type: ignore[return-value]


@pytest.fixture
def app_name(fleet: object) -> Iterator[str]:
    name = new_app("e2e")
    yield name
    cli("apps:destroy", "-a", name, "--confirm", name, check=False)
