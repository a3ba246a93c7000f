"""The manifest on the local cloud, as one story: plan a new app, apply it (created, deployed,
scaled), plan again (nothing), change config and open a security group rule by hand (both in the
next plan, both reverted by apply), export and plan the export (nothing), promote (no build)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from e2e_support import Url, cli, cli_json, get, wait_for

from provisioner.context import Context
from provisioner.ops import manifest_drift
from provisioner.ops.manifest_state import APPLIED_DOC

pytestmark = pytest.mark.cloud

HAND_RULE = {"IpProtocol": "tcp", "FromPort": 5433, "ToPort": 5433,
             "IpRanges": [{"CidrIp": "192.0.2.0/24"}]}  # fmt: skip


def manifest(app: str, prod: str, runners: int) -> str:
    return f"""\
[platform]
runners = {runners}

[apps.{app}]
source = "src"

[apps.{app}.formation]
web = 2

[apps.{app}.config]
GREETING = "hello"
SECRET_KEY = {{ secret = "generate" }}

[apps.{prod}.config]
WHERE = "production"

[pipelines.shop]
stages = ["{app}", "{prod}"]
"""


def plan(path: Path, *args: str) -> tuple[int, list[str]]:
    result = cli("plan", "--detailed-exitcode", *args, check=False, cwd=path)
    assert result.returncode in (0, 2), result.stderr
    return result.returncode, result.stdout.splitlines()


def test_manifest_story(fleet: list[dict[str, object]], tmp_path: Path) -> None:
    suffix = secrets.token_hex(3)
    app, prod = f"iac-{suffix}", f"iac-{suffix}-prod"
    src = tmp_path / "src"
    src.mkdir()
    (src / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    (src / "index.html").write_text("manifest\n")
    with Context.open("local") as ctx:
        platform = ctx.platform(create=False)
        hosts = cli_json("hosts")
        assert isinstance(hosts, list)
        alive = ("pending", "running")
        runners = len([h for h in hosts if h["role"] == "runner" and h["state"] in alive])
        (tmp_path / "dynoform.toml").write_text(manifest(app, prod, runners))
        ec2 = ctx.aws.ec2
        try:
            code, lines = plan(tmp_path)
            assert code == 2
            assert f"+ create apps.{app}" in lines and f"+ create apps.{prod}" in lines
            assert f"^ deploy apps.{app}.source: source " in "\n".join(lines)

            applied = cli("apply", "--auto-approve", cwd=tmp_path)
            assert "applied 7 changes" in applied.stderr, applied.stdout + applied.stderr
            web = [d for d in cli_json("ps", "-a", app) if d["type"] == "web"]  # type: ignore[union-attr]
            assert [d["state"] for d in web] == ["up", "up"]
            status, body = get(Url.of_app(app), "/")
            assert (status, body) == (200, b"manifest\n")
            code, lines = plan(tmp_path)
            assert code == 0, lines

            # Drift: config set by hand, a rule opened by hand.
            cli("config:set", "-a", app, "GREETING=by-hand")
            ec2.authorize_security_group_ingress(
                GroupId=platform.runner_sg_id, IpPermissions=[HAND_RULE]
            )
            code, lines = plan(tmp_path)
            assert code == 2
            assert f"~ update apps.{app}.config.GREETING: (sensitive) -> hello" in lines
            assert (
                "- delete platform.security_groups.runners.ingress[tcp/5433 192.0.2.0/24]" in lines
            )
            found = [line for _, line in manifest_drift.check(ctx) or []]  # as the controller
            assert f"~ update apps.{app}.config.GREETING: (sensitive) -> hello" in found
            cli("apply", "--auto-approve", cwd=tmp_path)
            assert plan(tmp_path)[0] == 0
            assert cli("config:get", "-a", app, "GREETING").stdout == "hello\n"

            # Export: references only; the plan of the export is empty.
            exported = cli("export").stdout
            assert "SECRET_KEY = { keep = true }" in exported
            secret = cli("config:get", "-a", app, "SECRET_KEY").stdout.strip()
            assert len(secret) == 64 and secret not in exported
            (tmp_path / "exported.toml").write_text(exported)
            code, lines = plan(tmp_path, "-f", "exported.toml")
            assert code == 0, lines

            # Promotion: the staging slug released on prod with prod's config, no build.
            promoted = cli_json(
                "pipelines:promote", "-a", app, "-f", str(tmp_path / "dynoform.toml")
            )
            assert promoted == {"source": app, "target": prod, "release": 2}
            staging = cli_json("releases:info", "-a", app)
            release = cli_json("releases:info", "-a", prod)
            assert release["slug_sha256"] == staging["slug_sha256"]  # type: ignore[index]
            assert cli_json("builds", "-a", prod) == []
            assert cli_json("config", "-a", prod) == {"WHERE": "production"}
            wait_for("prod serves", lambda: get(Url.of_app(prod), "/")[0] == 200, 30)
        finally:
            if _has_rule(ctx, platform.runner_sg_id):  # the test failed before apply
                ec2.revoke_security_group_ingress(
                    GroupId=platform.runner_sg_id, IpPermissions=[HAND_RULE]
                )
            for name in (app, prod):
                cli("apps:destroy", "-a", name, "--confirm", name, check=False)
            ctx.store.docs.delete(APPLIED_DOC)  # the shared platform keeps no manifest of ours


def _has_rule(ctx: Context, group_id: str) -> bool:
    found = ctx.aws.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    return any(p.get("FromPort") == 5433 for p in found.get("IpPermissions", []))
