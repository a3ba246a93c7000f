"""The apps, config and releases commands, end to end through the CLI against moto."""

import json

import pytest


@pytest.fixture
def cli(moto_cli):
    return moto_cli


def test_apps_create_list_info_destroy(cli):
    assert cli("apps:create", "shop-one")[0] == 0
    code, out, _ = cli("apps", "create", "--json")
    random_name = json.loads(out)["name"]
    assert code == 0 and random_name.count("-") == 2
    names = [a["name"] for a in json.loads(cli("apps", "--json")[1])]
    assert names == sorted(["shop-one", random_name])
    info = json.loads(cli("apps:info", "-a", "shop-one", "--json")[1])
    assert info["name"] == "shop-one" and info["release"] is None and info["stack"] == "debian-13"
    code, _, err = cli("apps:create", "shop-one")
    assert code == 1 and "already exists" in err
    code, _, err = cli("apps:create", "Bad_Name")
    assert code == 1 and "app name" in err and err.count("\n") == 1
    for name in ("shop-", "shop--two"):  # AWS's target group names would refuse them later
        code, _, err = cli("apps:create", name)
        assert code == 1 and "single dashes" in err and err.count("\n") == 1
    code, _, err = cli("apps:destroy", "-a", "shop-one", "--confirm", "wrong")
    assert code == 1 and "does not match" in err
    assert cli("apps:destroy", "-a", "shop-one", "--confirm", "shop-one")[0] == 0
    assert [a["name"] for a in json.loads(cli("apps", "--json")[1])] == [random_name]


def test_config_values_survive_and_make_releases(cli):
    cli("apps:create", "cfg-app")
    tricky = 'it\'s "quoted" = yes\nsecond line ünïcødé $HOME `x`'
    assert cli("config:set", "-a", "cfg-app", f"TRICKY={tricky}", "PLAIN=1")[0] == 0
    assert cli("config:get", "-a", "cfg-app", "TRICKY")[1] == tricky + "\n"
    assert json.loads(cli("config", "-a", "cfg-app", "--json")[1]) == {
        "PLAIN": "1",
        "TRICKY": tricky,
    }
    assert cli("config:unset", "-a", "cfg-app", "PLAIN")[0] == 0
    code, _, err = cli("config:unset", "-a", "cfg-app", "NOPE")
    assert code == 1 and "NOPE not set" in err
    code, _, err = cli("config:set", "-a", "cfg-app", "1BAD=x")
    assert code == 1 and "POSIX" in err
    releases = json.loads(cli("releases", "-a", "cfg-app", "--json")[1])
    assert [r["version"] for r in releases] == [2, 1]
    assert releases[0]["description"] == "Remove PLAIN config var"
    assert releases[1]["description"] == "Set PLAIN, TRICKY config vars"
    assert all(r["status"] == "succeeded" for r in releases)
    # config values never show up in release listings
    assert "quoted" not in cli("releases", "-a", "cfg-app", "--json")[1]


def test_env_file(cli, tmp_path):
    cli("apps:create", "env-app")
    env = tmp_path / "prod.env"
    env.write_text('A=1\nB="two\\nlines"\n')
    assert cli("config:set", "-a", "env-app", "--env-file", str(env))[0] == 0
    assert json.loads(cli("config", "-a", "env-app", "--json")[1]) == {"A": "1", "B": "two\nlines"}


def test_rollback_creates_a_new_release_with_old_config(cli):
    cli("apps:create", "roll-app")
    cli("config:set", "-a", "roll-app", "V=one")
    cli("config:set", "-a", "roll-app", "V=two")
    assert cli("releases:rollback", "-a", "roll-app")[0] == 0
    assert cli("config:get", "-a", "roll-app", "V")[1] == "one\n"
    releases = json.loads(cli("releases", "-a", "roll-app", "--json")[1])
    assert releases[0]["version"] == 3 and releases[0]["description"] == "Rollback to v1"
    assert cli("releases:rollback", "v2", "-a", "roll-app")[0] == 0
    assert cli("config:get", "-a", "roll-app", "V")[1] == "two\n"
    info = json.loads(cli("releases:info", "v4", "-a", "roll-app", "--json")[1])
    assert info["description"] == "Rollback to v2"
    code, _, err = cli("releases:rollback", "v9", "-a", "roll-app")
    assert code == 1 and "no release v9" in err


def test_app_from_git_remote(cli, tmp_path):
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert cli("apps:create", "git-app")[0] == 0
    remote = subprocess.run(
        ["git", "remote", "get-url", "dynoform"], capture_output=True, text=True
    )
    assert remote.stdout.strip() == "dynoform::git-app"
    assert json.loads(cli("apps:info", "--json")[1])["name"] == "git-app"
    assert cli("apps:rename", "new-git-app")[0] == 0
    assert json.loads(cli("apps:info", "--json")[1])["name"] == "new-git-app"


def test_a_damaged_release_record_breaks_only_its_own_app(cli):
    """A build once wrote process types like `web.2 x`; other apps must not suffer."""
    from provisioner.cli.common import g

    for name in ("bad-app", "good-app"):
        assert cli("apps:create", name, "--no-remote")[0] == 0
    assert cli("config:set", "-a", "good-app", "A=1")[0] == 0
    docs = g().ctx.store.docs
    docs.put(
        "apps/bad-app/releases/00000001.json",
        {"version": 1, "description": "x", "created_by": "x", "created_at": "x",
         "status": "succeeded", "process_types": {"web.2 x": "sh"}},
    )  # fmt: skip
    code, out, _ = cli("apps", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and "process type 'web.2 x'" in rows["bad-app"]["error"]
    assert rows["good-app"]["release"] == "v1"
    assert cli("config:set", "-a", "good-app", "B=2")[0] == 0
    code, _, err = cli("releases", "-a", "bad-app")
    assert code == 1 and "process type 'web.2 x'" in err and err.count("\n") == 1
