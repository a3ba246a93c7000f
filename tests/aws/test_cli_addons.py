"""The addons commands through the CLI against moto (managed provider on an AWS target)."""

import json

import pytest
from cli_support import platform_cli


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("provisioner.aws.managed.POLL_SECONDS", 0.0)
    with platform_cli(tmp_path, monkeypatch, capsys) as call:
        yield call


def test_create_info_attach_destroy_never_print_the_password(cli):
    assert cli("apps:create", "shop", "--no-remote")[0] == 0
    assert cli("apps:create", "admin", "--no-remote")[0] == 0
    code, out, err = cli("addons:create", "postgres", "-a", "shop", "--json")
    assert code == 0, err
    addon = json.loads(out)
    name = addon["name"]
    assert addon["provider"] == "managed" and "secret" not in addon
    url = json.loads(cli("config", "-a", "shop", "--json")[1])["DATABASE_URL"]
    password = url.split(":")[2].split("@")[0]
    assert len(password) == 48 and password not in out + err

    listed = json.loads(cli("addons", "--json")[1])
    assert [a["name"] for a in listed] == [name]
    code, info, err = cli("addons:info", "DATABASE", "-a", "shop")
    assert code == 0 and name in info and "shop as DATABASE_URL" in info
    assert password not in info + err

    assert cli("addons:attach", name, "-a", "admin", "--as", "shared")[0] == 0
    assert json.loads(cli("config", "-a", "admin", "--json")[1]) == {"SHARED_URL": url}
    assert cli("addons:detach", "SHARED", "-a", "admin")[0] == 0
    assert json.loads(cli("config", "-a", "admin", "--json")[1]) == {}

    code, _, err = cli("addons:destroy", name, "--confirm", "wrong")
    assert code == 1 and "does not match" in err
    code, _, err = cli("addons:create", "mysql", "-a", "shop")
    assert code == 1 and "postgres, redis" in err
    assert cli("addons:destroy", name, "--confirm", name)[0] == 0
    assert json.loads(cli("config", "-a", "shop", "--json")[1]) == {}
    assert json.loads(cli("addons", "--json")[1]) == []


def test_backups_capture_list_restore_and_what_a_snapshot_cannot_do(cli, tmp_path):
    assert cli("apps:create", "shop", "--no-remote")[0] == 0
    assert cli("apps:create", "copy", "--no-remote")[0] == 0
    source = cli("addons:create", "postgres", "-a", "shop")[1].strip()
    target = cli("addons:create", "postgres", "-a", "copy")[1].strip()
    code, ref, err = cli("pg:backups:capture", "-a", "shop")
    assert code == 0, err
    ref = ref.strip()
    assert ref.startswith(f"{source}:b")
    listed = json.loads(cli("pg:backups", "-a", "shop", "--json")[1])
    backup_id = ref.split(":")[1]
    assert [list(b) for b in listed] == [["id", "addon", "created_at", "snapshot", "ref"]]
    assert listed[0]["ref"] == ref and listed[0]["id"] == backup_id
    assert cli("pg:backups", "-a", "copy")[2] == "no backups yet\n"

    code, _, err = cli("pg:backups:download", ref, "-o", str(tmp_path / "x.dump"))
    assert code == 1 and f"{ref} is an RDS snapshot: it stays in AWS" in err
    code, _, err = cli("pg:backups:capture", "REDIS", "-a", "shop")
    assert code == 1 and "shop has no add-on attached as REDIS_URL" in err

    before = json.loads(cli("config", "-a", "copy", "--json")[1])["DATABASE_URL"]
    code, _, err = cli("pg:backups:restore", ref, "DATABASE_URL", "-a", "copy", "--confirm", target)
    assert code == 0 and f"restored {ref} into {target}" in err
    after = json.loads(cli("config", "-a", "copy", "--json")[1])["DATABASE_URL"]
    assert after != before and f"/{source.replace('-', '_')}?" in after
    code, info, _ = cli("addons:info", source)
    assert code == 0 and "backups:      1\n" in info and "provider:     managed\n" in info
