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

import pytest
from e2e_support import EXAMPLES, Url, cli, cli_json, get, new_app

from provisioner.context import Context
from provisioner.ops.runtimes import Acquire, ensure, host_platform
from provisioner.plan.runtimes import Runtime

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
