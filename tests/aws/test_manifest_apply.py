"""plan, apply, export and pipelines:promote through the CLI against moto (no hosts: apps'
records, config, domains, cron and the platform's security group rules)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
from cli_support import platform_cli

from provisioner.aws.platform import load_platform
from provisioner.aws.session import Aws
from provisioner.store import Store
from provisioner.targets import get_target

MANIFEST = """\
[platform]
ingress = ["tcp/6379 10.0.0.0/8"]

[apps.shop]
maintenance = true
cron = [{ schedule = "0 3 * * *", command = "python3 cleanup.py" }]

[apps.shop.config]
GREETING = "hello"
SECRET_KEY = { secret = "generate" }
API_TOKEN = { ssm = "/shop/api-token" }
"""


def plan_json(call) -> dict:
    code, out, err = call("--json", "plan")
    assert code == 0, err
    return json.loads(out)


def runner_group() -> str:
    aws = Aws(get_target("t1"))
    return load_platform(aws, get_target("t1")).runner_sg_id


def test_plan_apply_drift_export(tmp_path: Path, monkeypatch, capsys) -> None:
    with platform_cli(tmp_path, monkeypatch, capsys) as call:
        ssm = boto3.client("ssm", region_name="us-east-1")
        ssm.put_parameter(Name="/shop/api-token", Value="tok-1", Type="SecureString")
        (tmp_path / "dynoform.toml").write_text(MANIFEST)
        call("apps:create", "legacy", "--no-remote")

        code, out, _ = call("plan", "--detailed-exitcode")
        assert code == 2
        assert out.splitlines() == [
            "+ create platform.security_groups.runners.ingress[tcp/6379 10.0.0.0/8]",
            "+ create apps.shop",
            "+ create apps.shop.config.API_TOKEN: (sensitive) from ssm /shop/api-token",
            "+ create apps.shop.config.GREETING: hello",
            "+ create apps.shop.config.SECRET_KEY: (generated)",
            "~ update apps.shop.maintenance: off -> on",
            "+ create apps.shop.cron[0 3 * * * python3 cleanup.py]",
            "  unmanaged apps.legacy (not in the manifest; --prune destroys it)",
            "7 changes",
        ]
        assert "tok-1" not in json.dumps(plan_json(call))

        code, _, err = call("apply")  # not a terminal, no --auto-approve: refused
        assert code == 1 and "needs confirmation" in err
        code, _, err = call("apply", "--auto-approve")
        assert code == 0, err
        code, out, _ = call("plan", "--detailed-exitcode")
        assert (code, out.splitlines()[-1]) == (0, "no changes"), out
        _, secret, _ = call("config:get", "-a", "shop", "SECRET_KEY")
        assert len(secret.strip()) == 64
        _, token, _ = call("config:get", "-a", "shop", "API_TOKEN")
        assert token.strip() == "tok-1"

        # Drift: config by hand, a rule opened by hand, an SSM value changed.
        call("config:set", "-a", "shop", "GREETING=bye", "DEBUG=1")
        ec2 = boto3.client("ec2", region_name="us-east-1")
        ec2.authorize_security_group_ingress(
            GroupId=runner_group(),
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
                            "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
        )  # fmt: skip
        ssm.put_parameter(Name="/shop/api-token", Value="tok-2", Overwrite=True)
        addresses = [(c["address"], c["action"]) for c in plan_json(call)["changes"]]
        assert addresses == [
            ("platform.security_groups.runners.ingress[tcp/5432 0.0.0.0/0]", "delete"),
            ("apps.shop.config.API_TOKEN", "update"),
            ("apps.shop.config.GREETING", "update"),
            ("apps.shop.config.DEBUG", "delete"),
        ]
        code, _, err = call("apply", "--auto-approve")
        assert code == 0, err
        assert plan_json(call)["changes"] == []
        _, config, _ = call("--json", "config", "-a", "shop")
        assert json.loads(config)["GREETING"] == "hello" and "DEBUG" not in json.loads(config)
        # The rules platform:init made are still there (SSH from the operator included).
        perms = ec2.describe_security_groups(GroupIds=[runner_group()])["SecurityGroups"][0]
        assert {p["FromPort"] for p in perms["IpPermissions"]} == {22, 1024, 6379}

        # Export: references, never values; its plan is empty.
        code, exported, err = call("export")
        assert code == 0, err
        assert "tok-" not in exported and "GREETING = { keep = true }" in exported
        (tmp_path / "exported.toml").write_text(exported)
        code, out, _ = call("plan", "-f", "exported.toml", "--detailed-exitcode")
        assert (code, out.splitlines()) == (0, ["no changes"]), out

        # Prune destroys what the manifest does not name.
        code, out, _ = call("plan", "--prune")
        assert "- delete apps.legacy" in out.splitlines()
        code, _, err = call("apply", "--prune", "--auto-approve")
        assert code == 0, err
        _, listed, _ = call("--json", "apps")
        assert [a["name"] for a in json.loads(listed)] == ["shop"]


def test_errors_name_the_key_and_line(tmp_path: Path, monkeypatch, capsys) -> None:
    with platform_cli(tmp_path, monkeypatch, capsys) as call:
        (tmp_path / "dynoform.toml").write_text("[apps.shop.formation]\nweb = 'two'\n")
        code, _, err = call("plan")
        assert code == 1
        assert "dynoform.toml:2: apps.shop.formation.web: must be a number of dynos" in err
        (tmp_path / "dynoform.toml").write_text("[apps.shop.config]\nDB = { keep = true }\n")
        code, _, err = call("plan")
        assert code == 1 and "apps.shop.config.DB: is `keep = true` but DB is not set" in err


def test_promote_releases_the_slug_with_the_targets_config(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from provisioner.aws.state import Documents, bucket_name
    from provisioner.model.release import Release

    with platform_cli(tmp_path, monkeypatch, capsys) as call:
        (tmp_path / "dynoform.toml").write_text(
            '[pipelines.shop]\nstages = ["shop-staging", "shop"]\n'
        )
        call("apps:create", "shop-staging", "--no-remote")
        call("apps:create", "shop", "--no-remote")
        call("config:set", "-a", "shop", "WHERE=production")
        aws = Aws(get_target("t1"))
        platform = load_platform(aws, get_target("t1"))
        store = Store(Documents(aws.s3, bucket_name(platform.name, aws.account_id())))
        staging_id = store.app_id("shop-staging")
        slug = f"slugs/{staging_id}/{'ab' * 32}.tgz"
        aws.s3.put_object(Bucket=platform.bucket, Key=slug, Body=b"slug")
        built = Release(1, "Deploy 1234567", "me", "now", "pending", slug, "ab" * 32, 4)
        store.create_release("shop-staging", lambda v: built, {})
        store.set_release_status("shop-staging", 1, "succeeded")

        code, out, err = call("--json", "pipelines:promote", "-a", "shop-staging")
        assert code == 0, err
        assert json.loads(out) == {"source": "shop-staging", "target": "shop", "release": 2}
        release = store.current_release("shop")
        assert release is not None
        assert release.description == "Promote shop-staging v1"
        assert release.slug_key == f"slugs/{store.app_id('shop')}/{'ab' * 32}.tgz"
        assert store.release_config("shop", 2) == {"WHERE": "production"}
        body = aws.s3.get_object(Bucket=platform.bucket, Key=release.slug_key)["Body"].read()
        assert body == b"slug"
        code, _, err = call("pipelines:promote", "-a", "shop")
        assert code == 1 and "shop is the last stage of pipeline shop" in err


def test_addons_are_made_kept_and_destroyed(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("provisioner.aws.managed.POLL_SECONDS", 0.0)
    with platform_cli(tmp_path, monkeypatch, capsys) as call:
        manifest = tmp_path / "dynoform.toml"
        manifest.write_text(
            '[apps.shop]\naddons = [{ service = "postgres", provider = "managed" }]\n\n'
            '[apps.shop.config]\nGREETING = "hello"\n'
        )
        code, _, err = call("apply", "--auto-approve")
        assert code == 0, err
        config = json.loads(call("--json", "config", "-a", "shop")[1])
        assert sorted(config) == ["DATABASE_URL", "GREETING"]
        code, out, _ = call("plan", "--detailed-exitcode")
        assert code == 0, out  # DATABASE_URL is the add-on's: not config to remove
        _, exported, _ = call("export")
        assert 'addons = [{ service = "postgres", plan = "small", as = "DATABASE"' in exported
        assert config["DATABASE_URL"] not in exported
        (tmp_path / "exported.toml").write_text(exported)
        assert call("plan", "-f", "exported.toml", "--detailed-exitcode")[0] == 0

        manifest.write_text("[apps.shop]\naddons = []\n")
        name = json.loads(call("--json", "addons", "-a", "shop")[1])[0]["name"]
        code, out, _ = call("plan")
        assert f"- delete apps.shop.addons[DATABASE_URL]: {name} (postgres small, destroyed)" in out
        code, _, err = call("apply", "--auto-approve")
        assert code == 0, err
        assert json.loads(call("--json", "addons")[1]) == []
        assert "DATABASE_URL" not in json.loads(call("--json", "config", "-a", "shop")[1])


def test_the_controller_reports_drift_from_the_applied_manifest(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from provisioner.context import Context
    from provisioner.ops import manifest_drift

    with platform_cli(tmp_path, monkeypatch, capsys) as call:
        ctx = Context(get_target("t1"))
        guarded: list[int] = []

        def guard() -> None:
            guarded.append(1)

        manifest_drift.tick(ctx, guard)  # nothing applied yet: nothing to compare with
        assert manifest_drift.check(ctx) is None and guarded == []
        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name="/shop/api-token", Value="tok-1", Type="SecureString"
        )
        (tmp_path / "dynoform.toml").write_text(MANIFEST)
        assert call("apply", "--auto-approve")[0] == 0
        assert manifest_drift.check(ctx) == []

        call("config:set", "-a", "shop", "GREETING=bye")
        manifest_drift.tick(ctx, guard)
        manifest_drift.tick(ctx, guard)  # seen already: not said again
        call("config:set", "-a", "shop", "GREETING=hello")
        manifest_drift.tick(ctx, guard)
        assert len(guarded) == 2
        from provisioner import events

        said = [e.message for e in events.recent(ctx.store.docs, 50) if e.source == "drift"]
        assert said == [
            "drift from the manifest: ~ update apps.shop.config.GREETING: (sensitive) -> hello",
            "no drift: what exists matches the manifest",
        ]
