"""A Node.js app asking for a version gets it (from the npm registry once, then the host's copy
or the bucket), dynos run it, and a version that does not exist fails the build only."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from e2e_support import EXAMPLES, Url, cli, cli_json, get

pytestmark = pytest.mark.cloud


def test_a_node_app_asking_for_22_runs_22_and_node_is_kept(app_name: str, tmp_path: Path) -> None:
    source = tmp_path / "app"
    shutil.copytree(EXAMPLES / "nodejs-22", source)
    started = time.monotonic()
    first = cli("deploy", "-a", app_name, str(source), timeout=900)
    took = time.monotonic() - started
    assert "Using node v22." in first.stderr and "the version the app asks for" in first.stderr
    if "downloading Node.js 22." in first.stderr:  # the first on this platform: kept after
        assert "kept in the bucket" in first.stderr, first.stderr[-2000:]
    status, body = get(Url.of_app(app_name), "/")
    assert status == 200 and body.decode().startswith("v22."), body

    (source / "server.js").write_text((source / "server.js").read_text() + "// changed\n")
    started = time.monotonic()
    second = cli("deploy", "-a", app_name, str(source), timeout=900)
    print(f"\nnode 22 deploys: first {took:.1f} s, second {time.monotonic() - started:.1f} s")
    assert "downloading Node.js" not in second.stderr, second.stderr[-2000:]
    assert "Using node v22." in second.stderr

    package = json.loads((source / "package.json").read_text())
    package["engines"]["node"] = "99.x"
    (source / "package.json").write_text(json.dumps(package))
    failed = cli("deploy", "-a", app_name, str(source), check=False)
    last = failed.stderr.strip().splitlines()[-1]
    assert failed.returncode == 1 and "Node.js 99.x does not exist" in last, failed.stderr[-800:]
    assert "the newest releases nearby: 2" in last
    releases = cli_json("releases", "-a", app_name)
    assert isinstance(releases, list) and sorted(r["version"] for r in releases) == [1, 2]
    assert get(Url.of_app(app_name), "/")[0] == 200
