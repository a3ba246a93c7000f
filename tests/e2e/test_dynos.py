"""Dynos, the router and deploys that drop nothing: end to end on the local cloud."""

from __future__ import annotations

import json
import time

import pytest
from e2e_support import EXAMPLES, Load, Url, cli, cli_json, dyno_of, get

pytestmark = pytest.mark.cloud


def ps(app: str) -> list[dict[str, object]]:
    rows = cli_json("ps", "-a", app)
    assert isinstance(rows, list)
    return rows


def wait_for(predicate, timeout: float = 30.0, every: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def test_deploy_scale_and_zero_downtime_changes(app_name: str) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    url = Url.of_app(app_name)
    assert get(url, "/")[0] == 200
    assert dyno_of(url)["release"] == "v1"

    cli("ps:scale", "web=3", "-a", app_name)
    seen = {dyno_of(url)["dyno"] for _ in range(30)}
    assert seen == {"web.1", "web.2", "web.3"}
    hosts = {r["host"] for r in ps(app_name) if r["type"] == "web" and r["state"] == "up"}
    assert len(hosts) > 1

    # Besides a connection per request: POSTs on one keep-alive client connection, which the
    # router sends over its pooled connections to the dynos and never sends twice.
    kept = Load(url, rate=10.0, keep_alive=True, method="POST")
    with Load(url) as load, kept:
        cli("deploy", "-a", app_name, str(EXAMPLES / "python"))  # v2
        cli("releases:rollback", "-a", app_name)  # v3 = v1
        cli("config:set", "-a", app_name, "GREETING=hello 'there'")  # v4
        cli("ps:restart", "web", "-a", app_name)
        cli("ps:scale", "web=1", "-a", app_name)
        time.sleep(1.0)
    assert load.failures == [], load.failures[:5]
    assert load.ok > 20
    assert kept.failures == [], kept.failures[:5]
    assert kept.ok > 10 and {"v1", "v4"} <= kept.releases
    assert {"v1", "v4"} <= load.releases
    releases = cli_json("releases", "-a", app_name)
    assert [r["version"] for r in releases] == [4, 3, 2, 1]  # type: ignore[index,union-attr]
    assert releases[1]["description"] == "Rollback to v1"  # type: ignore[index]


def test_web_that_never_binds_port_fails_and_old_release_keeps_serving(
    app_name: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    url = Url.of_app(app_name)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "Procfile").write_text("web: sleep 3600\n")
    with Load(url) as load:
        result = cli("deploy", "-a", app_name, str(broken), "--boot-timeout", "6", check=False)
    assert result.returncode == 1
    assert "did not answer on $PORT" in result.stderr
    assert load.failures == [] and load.ok > 5
    assert dyno_of(url)["release"] == "v1"
    releases = cli_json("releases", "-a", app_name)
    assert releases[0]["version"] == 2 and releases[0]["status"] == "failed"  # type: ignore[index]
    assert cli_json("apps:info", "-a", app_name)["release"] == 1  # type: ignore[index]
    assert {r["release"] for r in ps(app_name)} == {"v1"} or wait_for(
        lambda: {r["release"] for r in ps(app_name)} == {"v1"}
    )


def test_crashed_dyno_restarts_and_one_off_dynos(app_name: str) -> None:
    cli("config:set", "-a", app_name, 'SOME_VAR=it\'s a "secret"\nsecond line')
    cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    web = next(r for r in ps(app_name) if r["name"] == "web.1")
    host = str(web["host"])
    unit = f"dyno-{app_name}.v2.web.1.service"
    pid = cli(
        "hosts:exec", host, "--", "systemctl", "show", "-p", "MainPID", "--value", unit
    ).stdout.strip()
    cli("hosts:exec", host, "--", "sudo", "kill", "-9", pid)
    back = wait_for(
        lambda: [
            r
            for r in ps(app_name)
            if r["name"] == "web.1" and r["state"] == "up" and int(r["restarts"]) >= 1
        ],  # type: ignore[call-overload]
        timeout=20,
    )
    assert back, ps(app_name)

    result = cli("run", "-a", app_name, "--", "sh", "-c", 'echo "$SOME_VAR"; exit 3', check=False)
    assert result.returncode == 3
    assert 'it\'s a "secret"\nsecond line' in result.stdout
    assert "secret" not in cli("ps", "-a", app_name, "--json").stdout


def test_isolation(app_name: str, fleet) -> None:  # type: ignore[no-untyped-def]
    other = app_name + "-b"
    cli("apps:create", other, "--no-remote")
    try:
        cli("config:set", "-a", other, "OTHER_SECRET=do-not-read")
        cli("deploy", "-a", other, str(EXAMPLES / "procfile"))
        cli("deploy", "-a", app_name, str(EXAMPLES / "procfile"))
        probe = (
            f"cat /srv/dynoform/apps/{other}/env/v2.json 2>&1 | head -c 200; echo;"
            "ls /srv/dynoform/apps 2>&1; echo;"
            "touch /app/x 2>&1; touch /etc/x 2>&1; touch /var/x 2>&1;"
            "touch /tmp/ok && echo tmp-writable; id -un"
        )
        result = cli("run", "-a", app_name, "--", "sh", "-c", probe, check=False)
        out = result.stdout
        assert "do-not-read" not in out
        assert "tmp-writable" in out
        assert out.count("Read-only file system") + out.count("Permission denied") >= 3, out
        assert f"dyno-{app_name}" in out
    finally:
        cli("apps:destroy", "-a", other, "--confirm", other, check=False)


def test_ps_json_fields(app_name: str) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "procfile"))
    rows = ps(app_name)
    assert rows and set(rows[0]) >= {
        "name",
        "type",
        "state",
        "host",
        "release",
        "since",
        "restarts",
        "memory_mb",
    }
    assert json.loads(json.dumps(rows))


def test_rename_a_running_app_keeps_it_serving_under_the_new_name(app_name: str) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    cli("config:set", "-a", app_name, "GREETING=renamed")  # v2
    cli("ps:scale", "web=1", "worker=0", "-a", app_name)
    old_url = Url.of_app(app_name)
    new_name = app_name + "-r"
    try:
        with Load(old_url) as load:
            cli("apps:rename", new_name, "-a", app_name)
        # No request to the old name failed while the new one started (no 502, 503 or reset):
        # the only errors come once the old name is gone (no rule: 404; no certificate for it).
        gone = ("HTTP 404", "SSLCertVerificationError")
        assert load.ok > 5 and all(f.startswith(gone) for f in load.failures), load.failures
        url = Url.of_app(new_name)
        assert get(url, "/")[0] == 200
        assert dyno_of(url)["release"] == "v2"
        rows = ps(new_name)
        assert [r["name"] for r in rows if r["state"] == "up"] == ["web.1"]
        assert app_name not in [a["name"] for a in cli_json("apps")]  # type: ignore[union-attr,index]
        assert cli("ps", "-a", app_name, check=False).returncode == 1
    finally:
        cli("apps:destroy", "-a", new_name, "--confirm", new_name, check=False)
