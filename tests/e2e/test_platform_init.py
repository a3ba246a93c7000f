"""Two `platform:init` at once on a new platform of their own (not the shared one): both
succeed and one network results (each used to find no VPC, gateway or route table and make
its own, and one of them failed on the other's)."""

from __future__ import annotations

import secrets
from pathlib import Path

from e2e_support import cli, cli_at_once

from provisioner.aws.session import Aws
from provisioner.aws.tags import tag_filters
from provisioner.targets import Target

TARGET = "initrace"


def test_two_inits_at_once_make_one_network(local_cloud: object, tmp_path: Path) -> None:
    platform = f"ir{secrets.token_hex(3)}"
    (tmp_path / "dynoform").mkdir()
    (tmp_path / "dynoform" / "targets.toml").write_text(
        f'[targets.{TARGET}]\nkind = "local"\nplatform = "{platform}"\n'
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    ec2 = Aws(Target(TARGET, kind="local", platform=platform)).ec2
    try:
        done = cli_at_once([["-t", TARGET, "platform:init"]] * 2, timeout=600, env=env)
        assert [r.returncode for r in done] == [0, 0], [r.stderr[-2000:] for r in done]
        found = tag_filters(platform)
        assert len(ec2.describe_vpcs(Filters=found)["Vpcs"]) == 1
        assert len(ec2.describe_internet_gateways(Filters=found)["InternetGateways"]) == 1
        assert len(ec2.describe_route_tables(Filters=found)["RouteTables"]) == 1
        assert len(ec2.describe_subnets(Filters=found)["Subnets"]) == 3
        assert len(ec2.describe_security_groups(Filters=found)["SecurityGroups"]) == 2
        again = cli("-t", TARGET, "platform:init", env=env)
        assert f"platform {platform} on {TARGET}: up to date" in again.stderr
        assert cli("-t", TARGET, "platform:info", env=env).returncode == 0
    finally:
        cli("-t", TARGET, "platform:destroy", "--confirm", platform, "--delete-state",
            env=env, check=False, timeout=900)  # fmt: skip
