"""The operations called as a library, from a Context made by the test (no CLI, no globals)."""

import pytest

from provisioner.aws.session import Aws
from provisioner.context import Context
from provisioner.errors import DynoformError, NotFound
from provisioner.ops import apps, config, oneoff, ps, releases
from provisioner.store import Store
from provisioner.targets import Target


def test_apps_config_and_releases_from_a_context(aws: Aws, store: Store) -> None:
    said: list[str] = []
    ctx = Context(Target("test", region="us-east-1"), said.append, aws=aws, store=store)
    app = apps.create(ctx, "lib-app")
    assert store.docs.get("apps/lib-app/app.json").data == app.to_dict()  # type: ignore[union-attr]
    assert config.set(ctx, "lib-app", {"A": "1", "B": "two words"}).version == 1
    assert config.get(ctx, "lib-app", "B") == "two words"
    assert config.unset(ctx, "lib-app", ["A"]).description == "Remove A config var"
    assert config.show(ctx, "lib-app") == {"B": "two words"}
    with pytest.raises(NotFound, match="A is not set"):
        config.get(ctx, "lib-app", "A")
    listed = releases.list_releases(ctx, "lib-app")
    assert [(r.version, r.description) for r in listed] == [
        (2, "Remove A config var"),
        (1, "Set A, B config vars"),
    ]
    assert releases.info(ctx, "lib-app") == listed[0]
    assert [row.to_dict() for row in apps.list_apps(ctx)] == [{"name": "lib-app", "release": "v2"}]
    info = apps.info(ctx, "lib-app")
    assert (info.name, info.id, info.release, info.web_url) == ("lib-app", app.app_id, 2, None)
    with pytest.raises(DynoformError, match="lib-app has no deployed release"):
        ps.scale(ctx, "lib-app", {"web": 2})
    with pytest.raises(DynoformError, match="lib-app has no deployed release"):
        oneoff.run(ctx, "lib-app", "true")
    renamed = apps.rename(ctx, "lib-app", "lib-app-2")
    assert (renamed.name, renamed.app_id) == ("lib-app-2", app.app_id)
    assert config.show(ctx, "lib-app-2") == {"B": "two words"}
    assert said == []  # nothing ran on hosts: nothing to report


def test_ps_knows_a_stray_of_a_failed_release_from_a_draining_old_one(
    aws: Aws, store: Store
) -> None:
    from provisioner.model.release import Release
    from provisioner.ops.ps import _strays
    from provisioner.plan.units import DynoInstance, DynoState

    ctx = Context(Target("test", region="us-east-1"), aws=aws, store=store)
    apps.create(ctx, "strays")
    for _ in range(3):
        store.create_release(
            "strays", lambda v: Release(v, f"v{v}", "test", "now", slug_key=f"s{v}"), {}
        )
    store.set_release_status("strays", 1, "succeeded")  # drains after v2's deploy
    store.set_release_status("strays", 2, "succeeded")  # serves
    store.set_release_status("strays", 3, "failed")  # an interrupted change

    def running(release: int) -> DynoState:
        return DynoState(
            DynoInstance("strays", release, "web.1", "i-a"), "active", "running", 1, 0, None, None
        )

    assert not _strays(ctx, "strays", [running(2), running(1)])
    assert _strays(ctx, "strays", [running(2), running(3)])
    stopped = DynoState(
        DynoInstance("strays", 3, "web.1", "i-a"), "inactive", "dead", 0, 0, None, None
    )
    assert not _strays(ctx, "strays", [running(2), stopped])
    crashed = DynoState(
        DynoInstance("strays", 3, "web.1", "i-a"), "failed", "failed", 0, 5, None, None
    )
    assert _strays(ctx, "strays", [running(2), crashed])
