"""App rules with HTTPS: rules on the HTTPS listener; on HTTP :80 only for apps that opt out
of the redirect (`plain_http`)."""

from __future__ import annotations

import pytest

from provisioner.aws.platform import ensure_platform
from provisioner.aws.router import RouterTable
from provisioner.targets import Target


@pytest.fixture
def platform(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    return ensure_platform(
        aws, Target("test", region="us-east-1", platform="rt"), ssh_cidr="203.0.113.7/32"
    )


def _hosts(aws, listener: str) -> list[list[str]]:
    rules = aws.elbv2.describe_rules(ListenerArn=listener)["Rules"]
    return [
        c["HostHeaderConfig"]["Values"]
        for r in rules
        if not r.get("IsDefault")
        for c in r["Conditions"]
        if c["Field"] == "host-header"
    ]


def test_rules_on_https_and_plain_http_opt_out(aws, platform):
    router = RouterTable(
        aws.elbv2,
        platform.name,
        platform.vpc_id,
        platform.listener_arns,
        "apps.test",
        http_listener_arn=platform.listener_arn,
    )
    router.ensure_rule("shop", plain_http=False)
    assert _hosts(aws, platform.https_listener_arn) == [["shop.apps.test"]]
    assert _hosts(aws, platform.listener_arn) == []  # :80's default redirects to HTTPS

    router.ensure_rule("shop", ["shop.example.org"], plain_http=True)
    assert _hosts(aws, platform.listener_arn) == [["shop.apps.test", "shop.example.org"]]
    router.ensure_rule("shop", ["www.example.org"])  # None: the :80 rule follows along
    assert _hosts(aws, platform.listener_arn) == [["shop.apps.test", "www.example.org"]]
    router.ensure_rule("shop", plain_http=False)
    assert _hosts(aws, platform.listener_arn) == []

    router.ensure_rule("shop", plain_http=True)
    router.remove_app("shop")
    assert _hosts(aws, platform.listener_arn) == []
    assert _hosts(aws, platform.https_listener_arn) == []
