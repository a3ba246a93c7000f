"""Custom domains through the CLI against moto: which names an app may add, one owner per
domain (a claim document in the state store), and what reaches the load balancer's rules."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import boto3
import pytest
from cli_support import platform_cli

from provisioner.aws.state import Documents
from provisioner.store import Store


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    with platform_cli(tmp_path, monkeypatch, capsys, "--domain", "apps.example.org") as call:
        for app in ("shop", "blog"):
            assert call("apps:create", app, "--no-remote")[0] == 0
        yield call


def _store(cli) -> Store:
    bucket = json.loads(cli("platform:info", "--json")[1])["bucket"]
    return Store(Documents(boto3.client("s3", region_name="us-east-1"), bucket))


def _rules(cli) -> list[list[str]]:
    """Host names of each app rule on the HTTPS listener, in priority order."""
    platform = json.loads(cli("platform:info", "--json")[1])
    elbv2 = boto3.client("elbv2", region_name="us-east-1")
    listener = platform["https_listener_arn"]
    rules: list[dict[str, Any]] = elbv2.describe_rules(ListenerArn=listener)["Rules"]
    return [
        [v for c in r["Conditions"] for v in c.get("HostHeaderConfig", {}).get("Values", [])]
        for r in sorted(rules, key=lambda r: int(r["Priority"]) if r["Priority"].isdigit() else 0)
        if not r["IsDefault"]
    ]


REFUSED = [
    ("shop.apps.example.org", "is under the platform's domain apps.example.org"),
    ("SHOP.apps.example.org.", "is under the platform's domain apps.example.org"),
    ("apps.example.org", "is the platform's domain apps.example.org"),
    ("*.example.com", "wildcard domains are not supported"),
    ("*.apps.example.org", "wildcard domains are not supported"),
    ("203.0.113.7", "is an IP address"),
    ("www.example.com\nx", "no spaces or control characters"),
]


def test_names_that_are_not_an_apps_own_are_refused_and_change_nothing(cli):
    assert cli("domains:add", "www.blog.example", "-a", "blog")[0] == 0
    before = _rules(cli)
    for name, reason in REFUSED:
        code, out, err = cli("domains:add", name, "-a", "blog")
        assert code == 1 and out == "", (name, err)
        assert err.startswith("error: domain ") and reason in err and err.count("\n") == 1, err
    assert _rules(cli) == before
    assert json.loads(cli("domains", "-a", "blog", "--json")[1])[1:] == [
        {"hostname": "www.blog.example", "kind": "custom", "certificate": "auto: issued (serving)"}
    ]


def test_a_domain_belongs_to_one_app_until_it_lets_go(cli):
    assert cli("domains:add", "www.example.com", "-a", "shop")[0] == 0
    code, _, err = cli("domains:add", "www.example.com", "-a", "blog")
    assert code == 1
    assert "www.example.com is already a domain of shop" in err
    assert "dynoform domains:remove www.example.com -a shop" in err
    assert _rules(cli) == [["shop.apps.example.org", "www.example.com"]]
    code, _, err = cli("domains:remove", "www.example.com", "-a", "blog")
    assert code == 1 and "www.example.com is not a domain of blog" in err

    assert cli("domains:remove", "www.example.com", "-a", "shop")[0] == 0
    assert _store(cli).domain_owner("www.example.com") is None
    assert cli("domains:add", "www.example.com", "-a", "blog")[0] == 0
    assert _store(cli).domain_owner("www.example.com") == "blog"

    # A rename takes the claim along; a destroy lets it go.
    assert cli("apps:rename", "journal", "-a", "blog")[0] == 0
    assert _store(cli).domain_owner("www.example.com") == "journal"
    code, _, err = cli("domains:add", "www.example.com", "-a", "shop")
    assert code == 1 and "already a domain of journal" in err
    assert cli("apps:destroy", "-a", "journal", "--confirm", "journal")[0] == 0
    assert _store(cli).domain_owner("www.example.com") is None
    assert cli("domains:add", "www.example.com", "-a", "shop")[0] == 0


def test_an_interrupted_add_locks_the_name_only_while_its_app_exists(cli):
    store = _store(cli)
    store.claim_domain("half.example.com", "shop")  # claimed; the record and rule never came
    code, _, err = cli("domains:add", "half.example.com", "-a", "blog")
    assert code == 1 and "already a domain of shop" in err
    code, _, err = cli("domains:remove", "half.example.com", "-a", "shop")  # the owner lets go
    assert code == 0 and "removed half.example.com from shop" in err
    assert store.domain_owner("half.example.com") is None

    store.claim_domain("half.example.com", "shop")
    code, _, err = cli("domains:add", "half.example.com", "-a", "shop")  # or adds it again
    assert code == 0 and "added half.example.com to shop" in err
    assert _rules(cli)[0] == ["shop.apps.example.org", "half.example.com"]

    store.claim_domain("gone.example.com", "blog")
    assert cli("apps:destroy", "-a", "blog", "--confirm", "blog")[0] == 0
    assert store.domain_owner("gone.example.com") == "blog"  # left behind ...
    assert cli("domains:add", "gone.example.com", "-a", "shop")[0] == 0  # ... but not a lock


def test_records_from_before_claims(cli):
    """Domains added before claims existed: the listed owner keeps them; an old record's
    name under the platform domain never reaches a rule."""
    store = _store(cli)
    store.update_app("shop", lambda a: replace(a, domains=("old.example.com",)))
    code, _, err = cli("domains:add", "old.example.com", "-a", "blog")
    assert code == 1 and "old.example.com is already a domain of shop" in err
    assert store.domain_owner("old.example.com") == "shop"

    store.update_app("blog", lambda a: replace(a, domains=("shop.apps.example.org", "*.x.com")))
    assert cli("apps:http", "--redirect", "-a", "blog")[0] == 0  # syncs blog's rule
    assert ["blog.apps.example.org", "*.x.com"] in _rules(cli)
    code, _, err = cli("domains:remove", "*.x.com", "-a", "blog")  # still removable
    assert code == 0, err
    code, _, err = cli("domains:remove", "shop.apps.example.org", "-a", "blog")
    assert code == 0, err
    assert store.app("blog").domains == ()


def test_the_operations_as_a_library(cli):
    """What the CLI prints, the operations return (and say) to any caller with a Context."""
    from provisioner.context import Context
    from provisioner.errors import NotFound
    from provisioner.ops import domains
    from provisioner.ops.domains import DomainRow

    said: list[str] = []
    with Context.open("t1", say=said.append) as ctx:
        added = domains.add(ctx, "shop", "WWW.Example.com.")
        assert added.domain == "www.example.com" and said[0] == "added www.example.com to shop"
        assert added.dns_hint.startswith("point www.example.com at ")
        certificate = added.cert_lines[0].split("(")[1].rstrip(")")
        assert added.cert_lines == [
            f"requested a certificate for www.example.com ({certificate})",
            f"serving certificate {certificate}",
        ]
        assert domains.list_domains(ctx, "shop") == [
            DomainRow("shop.apps.example.org", "default", "platform wildcard"),
            DomainRow("www.example.com", "custom", "auto: issued (serving)"),
        ]
        with pytest.raises(NotFound, match="www.example.com is not a domain of blog"):
            domains.remove(ctx, "blog", "www.example.com")
        removed = domains.remove(ctx, "shop", "www.example.com")
        assert removed.cert_lines == [
            f"stopped serving certificate {certificate}",
            f"deleted certificate {certificate}",
        ]
        assert said == ["added www.example.com to shop", "removed www.example.com from shop"]
        assert [r.kind for r in domains.list_domains(ctx, "shop")] == ["default"]


def test_a_domain_aws_refuses_after_the_check_is_taken_back(cli):
    """The check passed, then another writer filled the load balancer's rules before ours was
    made: AWS refuses (TooManyRules). The domain leaves the record and its claim goes, and the
    new app's target group goes too: nothing half-made blocks a later deploy."""
    from botocore.exceptions import ClientError

    from provisioner.context import Context
    from provisioner.ops import domains

    other = boto3.client("elbv2", region_name="us-east-1")
    with Context.open("t1") as ctx:
        listener = ctx.platform(create=False).https_listener_arn
        fixed = [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}]

        def another_writer(params, **kwargs):
            held = len(other.describe_rules(ListenerArn=listener)["Rules"]) - 1
            for i in range(100 - held):
                other.create_rule(
                    ListenerArn=listener, Priority=i + 1, Actions=fixed,
                    Conditions=[{"Field": "host-header", "Values": [f"o{i}.test"]}],
                )  # fmt: skip

        service = ctx.aws.elbv2.meta.service_model.service_id.hyphenize()
        ctx.aws.elbv2.meta.events.register_first(
            f"before-parameter-build.{service}.CreateRule", another_writer
        )
        with pytest.raises(ClientError, match="TooManyRules"):
            domains.add(ctx, "shop", "www.example.com")
        assert ctx.store.app("shop").domains == ()
        assert ctx.store.domain_owner("www.example.com") is None
        assert ctx.router().target_group_arn("shop") is None
