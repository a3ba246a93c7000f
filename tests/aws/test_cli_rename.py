"""apps:rename and apps:destroy keep every record true: add-ons, slugs, sources, build caches
and build logs belong to the app (by its id), not to whichever app has its old name."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from cli_support import platform_cli

from provisioner.aws import blobs as keys
from provisioner.aws.blobs import Blobs
from provisioner.aws.session import Aws
from provisioner.cli.common import g
from provisioner.context import Context
from provisioner.errors import DynoformError, NotFound
from provisioner.model.addons import Addon
from provisioner.model.app import App
from provisioner.model.formation import ProcessFormation
from provisioner.model.release import Release
from provisioner.ops import apps as ops
from provisioner.ops import builds, repair
from provisioner.ops.addons import destroy_app_addons
from provisioner.ops.addons import get as get_addon
from provisioner.store import APP_ID_RE, CONTROLLER_OPERATION, LeaseBusy, Store, now_iso
from provisioner.targets import Target


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("provisioner.aws.managed.POLL_SECONDS", 0.0)
    with platform_cli(tmp_path, monkeypatch, capsys) as call:
        yield call


def stored_build(store: Store, app: str, tmp: Path, text: str) -> tuple[str, Release]:
    """What a deploy stores (source, build log, cache, slug, build record, release), with the
    deploy's own key functions; building needs hosts, which the e2e test has."""
    blobs = Blobs(store.docs.s3, store.docs.bucket)
    app_id = store.app_id(app)
    tarball = tmp / f"{text}.tgz"
    tarball.write_text(text)
    sha = keys.sha256_file(tarball)
    blobs.upload_if_absent(keys.source_key(app_id, sha), tarball)
    blobs.upload_if_absent(keys.slug_key(app_id, sha), tarball)
    blobs.put_text(keys.cache_key(app_id), "cache")
    build_id = builds.new_build_id() + text
    builds.start_build(store, app, build_id, text, sha)
    blobs.put_text(keys.build_log_key(app_id, build_id), f"output of {text}\n")
    template = Release(1, f"Deploy {text}", "test", now_iso(), status="succeeded",
                       slug_key=keys.slug_key(app_id, sha), slug_sha256=sha,
                       process_types={"web": "serve"}, build_id=build_id)  # fmt: skip
    release = store.create_release(app, lambda v: replace(template, version=v), {"V": text})
    builds.finish_build(store, app, build_id, status="succeeded", release=release.version)
    # no hosts here: nothing runs, so a rollback only records its release
    store.save_formation(app, {"web": ProcessFormation(0, "basic")}, store.formation(app)[1])
    return build_id, release


def context(aws: Aws, store: Store) -> Context:
    """A Context on moto's AWS with this state store (no platform: nothing runs)."""
    return Context(Target("test", region="us-east-1"), aws=aws, store=store)


def bucket_keys(store: Store, app_id: str) -> list[str]:
    return sorted(key for prefix in keys.app_prefixes(app_id) for key in store.docs.keys(prefix))


def test_rename_keeps_addons_and_objects_and_the_old_name_reused_cannot_touch_them(cli, tmp_path):
    assert cli("apps:create", "shop", "--no-remote")[0] == 0
    assert cli("apps:create", "admin", "--no-remote")[0] == 0
    code, out, err = cli("addons:create", "postgres", "-a", "shop", "--json")
    assert code == 0, err
    addon = json.loads(out)["name"]
    assert cli("addons:attach", addon, "-a", "admin", "--as", "shop")[0] == 0
    store = g().ctx.store
    app_id = store.app_id("shop")
    assert APP_ID_RE.fullmatch(app_id)
    first_build, first = stored_build(store, "shop", tmp_path, "one")
    stored_build(store, "shop", tmp_path, "two")
    objects = bucket_keys(store, app_id)
    assert len(objects) == 7  # 2 sources, 2 slugs, 2 build logs, 1 cache

    code, _, err = cli("apps:rename", "shop-v2", "-a", "shop")
    assert code == 0, err
    listed = json.loads(cli("addons", "-a", "shop-v2", "--json")[1])
    assert [a["name"] for a in listed] == [addon] and listed[0]["app"] == "shop-v2"
    attached = {(a["app"], a["var"]) for a in listed[0]["attachments"]}
    assert attached == {("shop-v2", "DATABASE_URL"), ("admin", "SHOP_URL")}
    code, info, _ = cli("addons:info", "DATABASE", "-a", "shop-v2")
    assert code == 0 and "owner:        shop-v2" in info
    assert json.loads(cli("apps:info", "-a", "shop-v2", "--json")[1])["id"] == app_id
    code, output, err = cli("builds:output", first_build, "-a", "shop-v2")
    assert code == 0 and output == "output of one\n", err

    # an app that takes the old name is a new app: its own id, no add-ons, no objects
    assert cli("apps:create", "shop", "--no-remote")[0] == 0
    assert store.app_id("shop") != app_id
    assert json.loads(cli("addons", "-a", "shop", "--json")[1]) == []
    code, _, err = cli("builds:output", "-a", "shop")
    assert code == 1 and "shop has no builds" in err
    code, _, err = cli("apps:destroy", "-a", "shop", "--confirm", "shop")
    assert code == 0, err

    assert bucket_keys(store, app_id) == objects
    listed = json.loads(cli("addons", "-a", "shop-v2", "--json")[1])
    assert [a["name"] for a in listed] == [addon] and listed[0]["state"] == "available"
    assert "DATABASE_URL" in json.loads(cli("config", "-a", "shop-v2", "--json")[1])
    releases = json.loads(cli("releases", "-a", "shop-v2", "--json")[1])
    assert [r["version"] for r in releases] == [3, 2, 1]  # attach, deploy one, deploy two
    code, _, err = cli("releases:rollback", f"v{first.version}", "-a", "shop-v2")
    assert code == 0, err
    rolled = store.current_release("shop-v2")
    assert rolled.slug_key == first.slug_key and store.docs.keys(rolled.slug_key)
    assert cli("builds:output", first_build, "-a", "shop-v2")[1] == "output of one\n"

    # destroying the renamed app takes exactly its own: add-on, objects, documents
    assert cli("apps:destroy", "-a", "shop-v2", "--confirm", "shop-v2")[0] == 0
    assert bucket_keys(store, app_id) == []
    assert json.loads(cli("addons", "--json")[1]) == []
    assert [a["name"] for a in json.loads(cli("apps", "--json")[1])] == ["admin"]


def test_two_renames_to_one_name_exactly_one_wins(aws, store):
    for name in ("left", "right"):
        store.create_app(name)
        store.save_config(name, {"FROM": name}, None)
    ids = {name: store.app_id(name) for name in ("left", "right")}
    barrier = threading.Barrier(2)

    def rename(old: str) -> str:
        mine = Store(store.docs)  # as two processes would: each with its own leases
        barrier.wait()
        try:
            ops.rename(context(aws, mine), old, "taken")
            return "won"
        except DynoformError as exc:
            return exc.message

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(("left", "right"), pool.map(rename, ("left", "right")), strict=True))
    winners = [old for old, result in results.items() if result == "won"]
    assert len(winners) == 1, results
    loser = "right" if winners == ["left"] else "left"
    assert "taken" in results[loser]
    assert store.apps() == sorted([loser, "taken"])
    assert store.app_id("taken") == ids[winners[0]]
    assert store.config("taken")[0] == {"FROM": winners[0]}
    assert store.app_id(loser) == ids[loser] and store.config(loser)[0] == {"FROM": loser}


def test_a_rename_loses_to_an_app_created_with_the_name_first(aws, store):
    store.create_app("first")
    store.create_app("second")
    with pytest.raises(DynoformError, match="'second' already exists"):
        ops.rename(context(aws, store), "first", "second")
    with pytest.raises(DynoformError, match="'second' already exists"):
        store.claim_app(App("second", store.app_id("first")))
    assert store.apps() == ["first", "second"] and store.app("first").name == "first"


def test_an_app_from_before_ids_keeps_its_name_as_id_through_a_rename(aws, store, tmp_path):
    store.docs.put("apps/old-app/app.json", {"name": "old-app", "stack": "debian-13"})
    assert store.app_id("old-app") == "old-app"
    stored_build(store, "old-app", tmp_path, "legacy")
    objects = bucket_keys(store, "old-app")
    assert objects and all("/old-app/" in key for key in objects)
    ops.rename(context(aws, store), "old-app", "new-app")
    assert store.app("new-app").id == "old-app"
    assert store.docs.get("apps/new-app/app.json").data == {  # the old document, renamed
        "name": "new-app", "stack": "debian-13", "id": "old-app"}  # fmt: skip
    store.create_app("old-app")
    assert store.app_id("old-app") != "old-app"  # ids never look like names
    blobs = Blobs(store.docs.s3, store.docs.bucket)
    ops.delete_app_objects(store, blobs, "old-app", store.app_id("old-app"), print)
    assert bucket_keys(store, "old-app") == objects


def test_destroy_keeps_objects_another_record_shares_after_a_cut_short_rename(store, tmp_path):
    store.create_app("half")
    stored_build(store, "half", tmp_path, "x")
    app_id = store.app_id("half")
    store.claim_app(replace(store.app("half"), name="half-new"))  # the rename died here
    lines: list[str] = []
    blobs = Blobs(store.docs.s3, store.docs.bucket)
    ops.delete_app_objects(store, blobs, "half-new", app_id, lines.append)
    assert bucket_keys(store, app_id) and lines == [
        "kept the slugs and build objects of half-new: half has them too"
    ]
    addon = Addon("postgres-abc123", "postgres", "small", "managed", "half", app_id, "available")
    store.docs.create("addons/postgres-abc123.json", addon.to_dict())

    ctx = Context(Target("test", region="us-east-1"), lines.append, store=store)
    kept = destroy_app_addons(ctx, "half-new")
    assert kept == [] and lines[-1].startswith("kept the add-ons of half-new")
    assert get_addon(ctx, "postgres-abc123") == addon


def test_destroy_holds_the_lease_so_a_racing_command_is_refused_or_finds_the_app_gone(aws, store):
    """apps:destroy takes the app's lease like any command: a deploy holding it refuses the
    destroy as busy (the app stays whole), a controller's heal is waited for, and a command
    that waited for the destroy finds no app instead of writing records back."""
    store.create_app("shop")
    deploy = Store(store.docs)  # as another process would: its own leases
    with deploy.lease("shop", "deploy"):
        with pytest.raises(LeaseBusy, match="'shop' is busy: deploy by"):
            ops.destroy(context(aws, store), "shop")
    assert store.app_exists("shop")

    heal = Store(store.docs).lease("shop", f"{CONTROLLER_OPERATION}: heal")
    heal.__enter__()
    threading.Timer(1.5, heal.__exit__, (None, None, None)).start()
    started = time.monotonic()
    assert ops.destroy(context(aws, store), "shop") >= 1  # waited for the heal, then destroyed
    assert time.monotonic() - started >= 1.0
    assert store.docs.keys("apps/shop/") == [] and store.docs.keys("leases/shop.") == []

    late = context(aws, Store(store.docs))
    with pytest.raises(NotFound, match="no app named 'shop'"):
        with repair.changing(late, "shop", "deploy", wait=True):
            late.store.create_release("shop", lambda v: Release(v, "Deploy", "test", now_iso()), {})
    assert store.docs.keys("apps/shop/") == [] and store.docs.keys("leases/shop.") == []
    with pytest.raises(NotFound):
        ops.destroy(context(aws, store), "shop")
