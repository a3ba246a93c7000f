"""Add-ons end to end on the local cloud: Postgres visits, Redis jobs, backups, destroy."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from e2e_support import EXAMPLES, Url, cli, cli_json, get, new_app

pytestmark = pytest.mark.cloud
EXAMPLE = str(EXAMPLES / "addons")


def fetch(url: Url, path: str) -> dict[str, object]:
    status, body = get(url, path, timeout=10)
    assert status == 200, (path, status, body[:300])
    return dict(json.loads(body))


def addon_info(name: str) -> dict[str, object]:
    info = cli_json("addons:info", name)
    assert isinstance(info, dict)
    return info


def on_host(host: str, *argv: str) -> str:
    return cli("hosts:exec", host, "--", "sudo", "-n", *argv).stdout


@pytest.fixture(scope="module")
def apps(fleet: object) -> Iterator[list[str]]:
    """Apps made by this module; their add-ons and then the apps are destroyed at the end."""
    made: list[str] = []
    yield made
    owned = []
    for app in made:  # the apps go first, so no release has to roll for a removed var
        rows = cli_json("addons", "-a", app)
        owned += [str(a["name"]) for a in rows if a["app"] == app]  # type: ignore[union-attr,index]
        cli("apps:destroy", "-a", app, "--confirm", app, check=False)
    for name in owned:
        cli("addons:destroy", name, "--confirm", name, check=False)


@pytest.fixture(scope="module")
def counter(apps: list[str]) -> dict[str, str]:
    """An app with a Postgres and a Redis add-on, deployed with two web dynos and a worker."""
    app = new_app("adn")
    apps.append(app)
    postgres = cli("addons:create", "postgres", "-a", app).stdout.strip()
    redis = cli("addons:create", "redis", "-a", app).stdout.strip()
    cli("deploy", "-a", app, EXAMPLE)
    cli("ps:scale", "web=2", "worker=1", "-a", app)
    return {"app": app, "postgres": postgres, "redis": redis}


def counts(url: Url, n: int) -> tuple[list[int], set[str]]:
    seen, dynos = [], set()
    for _ in range(n):
        data = fetch(url, "/json")
        seen.append(int(data["count"]))  # type: ignore[call-overload]
        dynos.add(str(data["dyno"]))
    return seen, dynos


def test_visits_count_in_postgres_across_dynos_restarts_and_deploys(counter) -> None:  # type: ignore[no-untyped-def]
    app = counter["app"]
    config = cli_json("config", "-a", app)
    assert str(config["DATABASE_URL"]).startswith("postgres://")  # type: ignore[index]
    assert str(config["REDIS_URL"]).startswith("redis://")  # type: ignore[index]
    web_hosts = {r["host"] for r in cli_json("ps", "-a", app) if r["type"] == "web"}  # type: ignore[union-attr,index]
    assert len(web_hosts) == 2

    url = Url.of_app(app)
    seen, dynos = counts(url, 20)
    assert seen == sorted(seen) and len(set(seen)) == 20
    assert dynos == {"web.1", "web.2"}

    cli("ps:restart", "-a", app)
    after_restart, _ = counts(url, 3)
    assert after_restart[0] > seen[-1]

    cli("deploy", "-a", app, EXAMPLE)
    after_deploy, _ = counts(url, 3)
    assert after_deploy[0] > after_restart[-1]

    now = int(fetch(url, "/count")["count"])  # type: ignore[call-overload]
    psql = cli("pg:psql", "-a", app, "-c", "select count from visits")
    assert str(now) in psql.stdout.split()
    failed = cli("pg:psql", "-a", app, "-c", "select nope", check=False)
    assert failed.returncode != 0 and "nope" in failed.stdout + failed.stderr
    # a role reaches only its own database (pg_hba `sameuser`)
    refused = cli("pg:psql", "-a", app, "-c", "\\connect postgres", check=False)
    assert refused.returncode != 0 and "no pg_hba.conf entry" in refused.stdout + refused.stderr

    info = addon_info(counter["postgres"])
    assert "secret" not in info
    secret_free = cli("addons:info", counter["postgres"]).stdout
    assert str(config["DATABASE_URL"]).split(":")[2].split("@")[0] not in secret_free  # type: ignore[index]


def test_worker_consumes_the_queue_the_web_dyno_fills(counter) -> None:  # type: ignore[no-untyped-def]
    url = Url.of_app(counter["app"])
    before = int(fetch(url, "/processed")["processed"])  # type: ignore[call-overload]
    assert int(fetch(url, "/enqueue?n=25")["enqueued"]) >= 25  # type: ignore[call-overload]
    deadline = time.monotonic() + 30
    while True:
        state = fetch(url, "/processed")
        if int(state["processed"]) >= before + 25 or time.monotonic() > deadline:  # type: ignore[call-overload]
            break
        time.sleep(0.5)
    assert int(state["processed"]) == before + 25  # type: ignore[call-overload]
    assert state["queued"] == 0
    assert state["by"] == {"worker.1": before + 25}


def test_backup_restored_into_a_new_addon_gives_the_same_count(counter, apps, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = Url.of_app(counter["app"])
    count = int(fetch(url, "/count")["count"])  # type: ignore[call-overload]
    ref = cli("pg:backups:capture", counter["postgres"]).stdout.strip()
    assert ref.startswith(counter["postgres"] + ":b")
    dump = tmp_path / "backup.dump"
    assert cli("pg:backups:download", ref, "-o", str(dump)).stdout.strip() == str(dump)
    assert dump.read_bytes().startswith(b"PGDMP")  # pg_dump's custom format
    fetch(url, "/json")  # after the backup: not in the copy
    cli("ps:scale", "web=1", "worker=0", "-a", counter["app"])  # room for the copy's dyno

    copy = new_app("adc")
    apps.append(copy)
    target = cli("addons:create", "postgres", "-a", copy).stdout.strip()
    cli("pg:backups:restore", ref, "DATABASE_URL", "-a", copy, "--confirm", target)
    cli("deploy", "-a", copy, EXAMPLE)
    assert int(fetch(Url.of_app(copy), "/count")["count"]) == count  # type: ignore[call-overload]
    # the copy is its own database: counting there leaves the original alone
    fetch(Url.of_app(copy), "/json")
    assert int(fetch(url, "/count")["count"]) == count + 1  # type: ignore[call-overload]

    # restored in place: objects made after the backup go, the count goes back
    app = counter["app"]
    cli("pg:psql", "-a", app, "-c", "create table later (x int)")
    cli("pg:backups:restore", ref, counter["postgres"], "--confirm", counter["postgres"])
    tables = cli(
        "pg:psql",
        "-a",
        app,
        "-c",
        "select tablename from pg_tables where tableowner = current_user",
    )
    assert tables.stdout.split().count("visits") == 1 and "later" not in tables.stdout
    assert str(count) in cli("pg:psql", "-a", app, "-c", "select count from visits").stdout.split()


def test_destroy_leaves_no_process_data_or_config_var(apps) -> None:  # type: ignore[no-untyped-def]
    app = new_app("add")
    apps.append(app)
    postgres = cli("addons:create", "postgres", "-a", app).stdout.strip()
    redis = cli("addons:create", "redis", "--as", "cache", "-a", app).stdout.strip()
    pg_info, redis_info = addon_info(postgres), addon_info(redis)
    host = str(redis_info["resource"]["host_id"])  # type: ignore[index]
    unit = f"redis-server@{redis}.service"
    assert on_host(host, "systemctl", "is-active", unit).strip() == "active"
    database = str(pg_info["resource"]["database"])  # type: ignore[index]
    sql = "select datname from pg_database union all select rolname from pg_roles"
    psql = ("runuser", "-u", "postgres", "--", "psql", "-tAc", sql)
    assert on_host(host, *psql).split().count(database) == 2

    address, port = str(redis_info["resource"]["host"]), redis_info["resource"]["port"]  # type: ignore[index]
    listening = on_host(host, "ss", "-Hltn").split()
    for wanted in (5432, port):
        assert f"{address}:{wanted}" in listening and f"0.0.0.0:{wanted}" not in listening
    noauth = on_host(host, "redis-cli", "-h", address, "-p", str(port), "ping")
    assert "NOAUTH" in noauth

    cli("addons:destroy", postgres, "--confirm", postgres)
    cli("addons:destroy", "CACHE", "-a", app, "--confirm", redis)
    assert cli_json("config", "-a", app) == {}
    assert cli_json("addons", "-a", app) == []
    assert database not in on_host(host, *psql).split()
    state = cli("hosts:exec", host, "--", "systemctl", "is-active", unit, check=False).stdout
    assert state.strip() in ("inactive", "unknown")
    leftovers = on_host(
        host,
        "sh",
        "-c",
        f"ls -d /var/lib/redis/{redis} /etc/redis/redis-{redis}.conf 2>&1; pgrep -fa '{redis}' || true",
    )
    assert leftovers.count("No such file") == 2 and "redis-server" not in leftovers


def test_addon_host_playbook_is_idempotent(counter) -> None:  # type: ignore[no-untyped-def]
    rows = cli_json("addons:hosts", "--check")
    assert isinstance(rows, list) and len(rows) == 1
    assert rows[0]["changes"] == []  # type: ignore[index]
    assert counter["postgres"] in rows[0]["addons"]  # type: ignore[index]


def test_hosts_lists_the_addon_host_by_its_role(counter) -> None:  # type: ignore[no-untyped-def]
    rows = cli_json("hosts")
    assert isinstance(rows, list)
    addon_hosts = [r for r in rows if r["role"] == "addon" and r["state"] == "running"]
    assert len(addon_hosts) == 1 and addon_hosts[0]["dynos"] is None
    assert any(r["role"] == "runner" for r in rows)
