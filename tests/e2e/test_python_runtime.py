"""An app gets the Python it asks for: made once per platform (the local cloud compiles it from
Debian's copy of CPython's source: ~3 min, the only test that compiles), then from the bucket or
the host's copy in seconds; the slug carries the interpreter; an unknown version fails the
build in one line while the release before keeps serving."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from e2e_support import EXAMPLES, Url, cli, cli_json, get, new_app

pytestmark = pytest.mark.cloud

APP = EXAMPLES / "python-getting-started-like"


def versions(app: str) -> dict[str, str]:
    status, body = get(Url.of_app(app), "/")
    assert status == 200, body[:300]
    return dict(json.loads(body))


def deploy(app: str, source: Path, check: bool = True) -> tuple[str, float]:
    started = time.monotonic()
    result = cli("deploy", "-a", app, str(source), timeout=1800, check=check)
    return result.stderr, time.monotonic() - started


def test_an_app_runs_the_python_it_asks_for(app_name: str, tmp_path: Path) -> None:
    output, first = deploy(app_name, APP)
    assert "Using Python 3.14.7 (asked for in .python-version): " in output
    assert versions(app_name)["python"] == "3.14.7"
    assert versions(app_name)["django"].startswith("6.0")
    run = cli("run", "-a", app_name, "--", "python", "-V")
    assert run.stdout.strip() == "Python 3.14.7"

    other = new_app("e2epy")
    try:
        again, second = deploy(other, APP)
        assert "compiling CPython" not in again
        assert "Using Python 3.14.7 (asked for in .python-version): " in again
        assert versions(other)["python"] == "3.14.7"
    finally:
        cli("apps:destroy", "-a", other, "--confirm", other, check=False)
    print(f"\nPython 3.14 app: first deploy {first:.1f} s, second app {second:.1f} s")

    unknown = tmp_path / "unknown"
    shutil.copytree(APP, unknown)
    (unknown / ".python-version").write_text("3.14.9\n")
    releases = len(cli_json("releases", "-a", app_name))  # type: ignore[arg-type]
    failed, _ = deploy(app_name, unknown, check=False)
    assert "Python 3.14.9 is not a version dynoform knows: for 3.14 it has 3.14.7" in failed
    assert len(cli_json("releases", "-a", app_name)) == releases  # type: ignore[arg-type]
    assert versions(app_name)["python"] == "3.14.7"
