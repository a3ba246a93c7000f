"""The README's Python example, run as it is against the local cloud."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from e2e_support import EXAMPLES, REPO, Url, cli, cli_json, dyno_of

pytestmark = pytest.mark.cloud


def test_the_library_example_creates_deploys_and_scales_an_app(fleet: object) -> None:
    name = f"lib-{secrets.token_hex(3)}"
    try:
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "library.py"), name],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "DYNOFORM_TARGET": "local"},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
        lines = result.stdout.splitlines()
        assert f"-----> Deploying {name}: Deploy from directory" in lines
        url = Url.of_app(name)
        assert lines[-1] == f"{url.scheme}://{url.host}:{url.port}/"
        web = [d for d in cli_json("ps", "-a", name) if d["type"] == "web"]  # type: ignore[union-attr,index]
        assert sorted((d["name"], d["state"]) for d in web) == [("web.1", "up"), ("web.2", "up")]
        for dyno in web:
            assert f"{dyno['name']} up {dyno['host']}" in lines
        # the router reaches both: every web dyno serves the app
        assert {dyno_of(url)["dyno"] for _ in range(20)} == {"web.1", "web.2"}
    finally:
        cli("apps:destroy", "-a", name, "--confirm", name, check=False)
