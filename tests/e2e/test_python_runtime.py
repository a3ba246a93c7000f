"""An app gets the Python it asks for: made once per platform (the local cloud compiles it from
Debian's copy of CPython's source: ~3 min, the only test that compiles), then from the bucket or
the host's copy in seconds; the slug carries the interpreter; an unknown version fails the
build in one line while the release before keeps serving."""

from __future__ import annotations

import json
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from e2e_support import EXAMPLES, Controlled, Url, get

from provisioner.context import Context
from provisioner.ops.runtimes import Acquire, ensure, host_platform
from provisioner.plan.runtimes import Runtime

pytestmark = pytest.mark.cloud

APP = EXAMPLES / "python-getting-started-like"


def versions(controlled: Controlled, app: str) -> dict[str, str]:
    parts = urlsplit(str(controlled.json("apps:info", "-a", app)["web_url"]))
    url = Url(str(parts.hostname), int(parts.port or 443), parts.scheme)
    status, body = get(url, "/")
    assert status == 200, body[:300]
    return dict(json.loads(body))


def deploy(controlled: Controlled, app: str, source: Path, check: bool = True) -> tuple[str, float]:
    started = time.monotonic()
    result = controlled.cli("deploy", "-a", app, str(source), timeout=1800, check=check)
    return result.stderr, time.monotonic() - started


def test_an_app_runs_the_python_it_asks_for(controlled: Controlled, tmp_path: Path) -> None:
    """On the controlled platform (the side test stream): its compile overlaps the main one."""
    app = f"py-{secrets.token_hex(3)}"
    controlled.cli("apps:create", app, "--no-remote")
    try:
        _runs_the_python_it_asks_for(controlled, app, tmp_path)
    finally:
        controlled.cli("apps:destroy", "-a", app, "--confirm", app, check=False)


def _runs_the_python_it_asks_for(controlled: Controlled, app: str, tmp_path: Path) -> None:
    output, first = deploy(controlled, app, APP)
    assert "Using Python 3.14.7 (asked for in .python-version): " in output
    assert versions(controlled, app)["python"] == "3.14.7"
    assert versions(controlled, app)["django"].startswith("6.0")
    run = controlled.cli("run", "-a", app, "--", "python", "-V")
    assert run.stdout.strip() == "Python 3.14.7"

    with controlled.deployed("py2", APP) as (other, _):
        log = controlled.cli("builds:output", "-a", other).stdout  # its build, as recorded
        assert "compiling CPython" not in log, log[-2000:]
        assert "Using Python 3.14.7 (asked for in .python-version): " in log
        assert versions(controlled, other)["python"] == "3.14.7"
    print(f"\nPython 3.14 app: first deploy {first:.1f} s")

    unknown = tmp_path / "unknown"
    shutil.copytree(APP, unknown)
    (unknown / ".python-version").write_text("3.14.9\n")
    releases = len(controlled.json("releases", "-a", app))
    failed, _ = deploy(controlled, app, unknown, check=False)
    assert "Python 3.14.9 is not a version dynoform knows: for 3.14 it has 3.14.7" in failed
    assert len(controlled.json("releases", "-a", app)) == releases
    assert versions(controlled, app)["python"] == "3.14.7"


# A stand-in runtime that takes a few seconds to make and says so when it is made.
_SLOW = 'sleep 3; mkdir -p r/bin; echo made > r/bin/tool; echo MADE; tar -czf "$1/runtime.tar.gz" -C r .'


def test_two_builds_on_one_host_make_a_runtime_once(fleet: object) -> None:
    with Context.open("local") as ctx:
        host = ctx.fleet().ready()[0]
        platform = host_platform(ctx.fleet().connect(host))
        runtime = Runtime("node", f"0.0.{secrets.randbelow(10**6)}", platform)
        plan = Acquire(what="making a stand-in", script=_SLOW, origin="test")
        blobs = ctx.blobs()

        def make(_: int) -> list[str]:
            lines: list[str] = []
            with Context.open("local") as own:  # an SSH connection of its own
                conn = own.fleet().connect(host)
                ensure(conn, blobs, runtime, lambda: plan, lines.append, lines.append)
                listing = conn.run(["cat", f"{runtime.host_dir}/bin/tool"], check=True)
            assert listing.stdout == "made\n"
            return lines

        try:
            with ThreadPoolExecutor(2) as pool:
                outputs = list(pool.map(make, range(2)))
            assert sorted(o.count("MADE") for o in outputs) == [0, 1], outputs
            assert blobs.get_text(runtime.pointer_key) is not None
        finally:
            ctx.fleet().connect(host).run(["rm", "-rf", "--", runtime.host_dir], sudo=True)
            blobs.delete_prefix(runtime.pointer_key.rsplit(".", 1)[0])
