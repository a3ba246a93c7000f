"""End-to-end fixtures: a platform with two hosts on the local cloud, apps made and destroyed."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from e2e_support import CONTROLLED_CIDR, CONTROLLED_TARGET, Controlled, cli, cli_json, new_app

from provisioner.aws.session import Aws
from provisioner.targets import Target


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


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the controlled platform are marked `controlled` (scripts/test.sh runs them
    beside the shared platform's tests)."""
    for item in items:
        if "controlled" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.controlled)


@pytest.fixture(scope="session")
def controlled(
    local_cloud: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Controlled]:
    """A platform of its own with two runners and its controller at work (tests that kill
    hosts never touch the shared one); destroyed at the end of the session, even on failure."""
    platform = f"ct{secrets.token_hex(3)}"
    config = tmp_path_factory.mktemp("controller-config")
    (config / "dynoform").mkdir()
    (config / "dynoform" / "targets.toml").write_text(
        f'[targets.{CONTROLLED_TARGET}]\nkind = "local"\nplatform = "{platform}"\n'
        f'vpc_cidr = "{CONTROLLED_CIDR}"\n'
    )
    env = {"XDG_CONFIG_HOME": str(config), "COLUMNS": "200"}
    target = Target(CONTROLLED_TARGET, kind="local", platform=platform, vpc_cidr=CONTROLLED_CIDR)
    world = Controlled(env, Aws(target), platform)
    try:
        world.cli("platform:init")
        world.cli("hosts:add", "--count", "2")
        yield world
    finally:
        world.cli(
            "platform:destroy", "--confirm", platform, "--delete-state", check=False, timeout=900
        )
