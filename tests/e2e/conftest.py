"""End-to-end fixtures: a platform with two hosts on the local cloud, apps made and destroyed."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from e2e_support import cli, cli_json


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


def new_app(prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    cli("apps:create", name, "--no-remote")
    return name


@pytest.fixture
def app_name(fleet: object) -> Iterator[str]:
    name = new_app("e2e")
    yield name
    cli("apps:destroy", "-a", name, "--confirm", name, check=False)
