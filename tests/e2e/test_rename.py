"""apps:rename on the local cloud: the app keeps its database, slugs and build output under the
new name, and an app that later takes the old name can neither see nor destroy any of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from e2e_support import EXAMPLES, Url, cli, cli_json, get, new_app

pytestmark = pytest.mark.cloud
EXAMPLE = EXAMPLES / "addons"


def fetch(url: Url, path: str) -> dict[str, object]:
    status, body = get(url, path, timeout=10)
    assert status == 200, (path, status, body[:300])
    return dict(json.loads(body))


def visit(url: Url) -> int:
    """Count one visit in the app's database; the count after it."""
    return int(fetch(url, "/json")["count"])  # type: ignore[call-overload]


def test_renamed_app_keeps_its_database_slugs_and_builds(fleet: object, tmp_path: Path) -> None:
    app = new_app("ren")
    new = app + "-r"
    try:
        postgres = cli("addons:create", "postgres", "-a", app).stdout.strip()  # v1
        cli("deploy", "-a", app, str(EXAMPLE))  # v2
        cli("ps:scale", "web=1", "worker=0", "-a", app)
        changed = tmp_path / "addons"
        shutil.copytree(EXAMPLE, changed)
        (changed / "second.txt").write_text("another slug\n")
        cli("deploy", "-a", app, str(changed))  # v3: another slug than v2's
        count = visit(Url.of_app(app))
        first_build = [b["id"] for b in cli_json("builds", "-a", app)][-1]  # type: ignore[union-attr,index]

        cli("apps:rename", new, "-a", app)
        rows = cli_json("addons", "-a", new)
        assert [(a["name"], a["app"]) for a in rows] == [(postgres, new)]  # type: ignore[union-attr,index]
        url = Url.of_app(new)
        assert visit(url) == count + 1  # the same database
        output = cli("builds:output", first_build, "-a", new)
        assert "no output stored" not in output.stderr and output.stdout.strip()

        # an app that takes the old name is another app; destroying it leaves the renamed one be
        cli("apps:create", app, "--no-remote")
        assert cli_json("addons", "-a", app) == []
        cli("apps:destroy", "-a", app, "--confirm", app)

        assert [a["name"] for a in cli_json("addons", "-a", new)] == [postgres]  # type: ignore[union-attr,index]
        assert visit(url) == count + 2
        psql = cli("pg:psql", "-a", new, "-c", "select count from visits")
        assert str(count + 2) in psql.stdout.split()
        # v2's slug is on no host under the new name: the rollback fetches it from the bucket
        cli("releases:rollback", "v2", "-a", new)
        assert fetch(url, "/")["release"] == "v4"
        assert visit(url) == count + 3
    finally:
        for name in (new, app):
            cli("apps:destroy", "-a", name, "--confirm", name, check=False)
