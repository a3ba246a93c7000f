import pytest
from cli_support import http_load_balancer

from provisioner.aws.router import (
    RouterTable,
    RouterTarget,
    app_hostnames,
    target_group_name,
)


@pytest.fixture
def router(aws):
    vpc, _, listener = http_load_balancer(aws)
    return RouterTable(aws.elbv2, "test", vpc, [listener], "apps.example.com")


def test_names_are_short_unique_and_stable():
    long_app = "a" * 30
    assert len(target_group_name("dynoform", long_app)) <= 32
    assert target_group_name("p", "app-one") != target_group_name("q", "app-one")
    assert target_group_name("p", "app-one") == target_group_name("p", "app-one")
    # any number of custom names: rules hold them 5 at most (plan.shards.pack_hosts)
    assert len(app_hostnames("x", "d", ["a", "b", "c", "e", "f"])) == 6
    # Names of the platform domain never reach an app's rule: they are other apps' names.
    assert app_hostnames("x", "d.test", ["y.d.test", "*.d.test", "d.test", "w.e"]) == [
        "x.d.test",
        "w.e",
    ]


def test_rule_targets_and_removal(router, aws):
    router.ensure_rule("shop", ["shop.example.org"])
    router.ensure_rule("shop", ["shop.example.org"])  # idempotent: still one rule
    router.ensure_rule("blog")
    rules = [
        r
        for r in aws.elbv2.describe_rules(ListenerArn=router.listener_arns[0])["Rules"]
        if not r["IsDefault"]
    ]
    assert len(rules) == 2
    assert len({r["Priority"] for r in rules}) == 2
    added, removed = router.sync_targets(
        "shop", {RouterTarget("10.42.1.10", 20001), RouterTarget("10.42.2.10", 20002)}
    )
    assert len(added) == 2 and not removed
    added, removed = router.sync_targets(
        "shop", {RouterTarget("10.42.1.10", 20001), RouterTarget("10.42.2.11", 20003)}
    )
    assert added == {RouterTarget("10.42.2.11", 20003)} and removed == {
        RouterTarget("10.42.2.10", 20002)
    }
    assert router.targets("shop") == {
        RouterTarget("10.42.1.10", 20001),
        RouterTarget("10.42.2.11", 20003),
    }
    router.ensure_rule("shop", ["shop.example.org"], maintenance=True)
    rule = router._app_rule(router.listener_arns[0], "shop")
    assert rule["Actions"][0]["Type"] == "fixed-response"
    router.remove_app("shop")
    assert router.target_group_arn("shop") is None
    assert router._app_rule(router.listener_arns[0], "shop") is None
    assert router.target_group_arn("blog") is not None


def test_a_pinned_app_looks_its_target_group_up_once(router, aws):
    router.ensure_rule("shop", ["shop.example.org"])
    asked = []

    def count(**kwargs):
        asked.append(kwargs)
        return describe(**kwargs)

    describe = aws.elbv2.describe_target_groups
    aws.elbv2.describe_target_groups = count
    targets = [RouterTarget("10.42.1.10", 20001)]
    with router.pinned("shop"):
        router.register("shop", targets)
        for _ in range(3):
            router.health("shop", targets)
        router.deregister("shop", targets)
        router.drain_seconds("shop")
    assert len(asked) == 1
    # Outside, each call looks again (another command may remove the app meanwhile).
    router.health("shop", targets)
    assert len(asked) == 2
    with router.pinned("shop"):
        router.remove_app("shop")
        assert router.target_group_arn("shop") is None
