"""One-off dynos live until they exit or are stopped: rollouts leave them alone."""

from __future__ import annotations

import time

import pytest
from e2e_support import EXAMPLES, cli, cli_json

pytestmark = pytest.mark.cloud


def oneoffs(app: str) -> dict[str, str]:
    """run.N -> state, from `ps`."""
    rows = cli_json("ps", "-a", app)
    assert isinstance(rows, list)
    return {str(r["name"]): str(r["state"]) for r in rows if r["type"] == "run"}


def test_detached_one_off_survives_scale_config_and_deploy(app_name: str) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "procfile"))
    cli("run", "--detach", "-a", app_name, "--", "sleep", "300")
    deadline = time.monotonic() + 20
    while not oneoffs(app_name) and time.monotonic() < deadline:
        time.sleep(0.5)
    running = oneoffs(app_name)
    assert list(running.values()) == ["up"], running

    cli("ps:scale", "web=2", "-a", app_name)
    cli("config:set", "-a", app_name, "AFTER=one-off")
    cli("deploy", "-a", app_name, str(EXAMPLES / "procfile"))
    assert oneoffs(app_name) == running  # the same run.N, still up

    (name,) = running
    cli("ps:stop", name, "-a", app_name)
    assert oneoffs(app_name) == {}
