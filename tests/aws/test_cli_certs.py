"""Custom-domain certificates through the CLI against moto: automatic ones from ACM (DNS
validation through Route 53), your own with certs:add, and what the HTTPS listener serves."""

from __future__ import annotations

import json

import pytest
from cli_support import platform_cli
from tls_support import user_cert


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("provisioner.ops.certs.WAIT_POLL_SECONDS", 0.05)
    with platform_cli(tmp_path, monkeypatch, capsys, "--domain", "apps.example.org") as call:
        assert call("apps:create", "shop", "--no-remote")[0] == 0
        yield call


def _acm_wait(monkeypatch, seconds: int) -> None:
    """How long moto's ACM takes to "validate" a requested certificate."""
    import moto.settings

    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", seconds)


def _listener_certs(cli) -> set[str]:
    import boto3

    platform = json.loads(cli("platform:info", "--json")[1])
    elbv2 = boto3.client("elbv2", region_name="us-east-1")
    listed = elbv2.describe_listener_certificates(ListenerArn=platform["https_listener_arn"])
    return {c["CertificateArn"] for c in listed["Certificates"] if not c["IsDefault"]}


def _own_certificate(tmp_path, names: list[str]):
    return user_cert(tmp_path, names, chained=False).write(tmp_path)


def _domains(cli) -> dict[str, str]:
    code, out, err = cli("domains", "-a", "shop", "--json")
    assert code == 0, err
    return {row["hostname"]: row["certificate"] for row in json.loads(out)}


def test_a_custom_domain_gets_an_automatic_certificate_once_validated(cli, monkeypatch):
    import boto3

    zone = boto3.client("route53").create_hosted_zone(Name="example.com", CallerReference="z")
    _acm_wait(monkeypatch, 3600)
    code, _, err = cli("domains:add", "www.example.com", "-a", "shop")
    assert code == 0, err
    assert "requested a certificate for www.example.com" in err
    assert "DNS validation records put in Route 53 zone" in err
    assert "dynoform domains:wait www.example.com -a shop" in err
    assert "point www.example.com at " in err
    records = boto3.client("route53").list_resource_record_sets(
        HostedZoneId=zone["HostedZone"]["Id"]
    )["ResourceRecordSets"]
    assert any(r["Type"] == "CNAME" and r["Name"].endswith("www.example.com.") for r in records)
    assert _domains(cli)["www.example.com"] == "auto: pending validation"
    assert _listener_certs(cli) == set()  # not served before it is issued

    code, _, err = cli("domains:wait", "www.example.com", "-a", "shop", "--timeout", "0")
    assert code == 1 and "still waiting for certificates: www.example.com" in err

    _acm_wait(monkeypatch, -1)
    code, _, err = cli("domains:wait", "www.example.com", "-a", "shop", "--timeout", "5")
    assert code == 0, err
    assert _domains(cli)["www.example.com"] == "auto: issued (serving)"
    certs = json.loads(cli("certs", "-a", "shop", "--json")[1])
    assert [(c["kind"], c["domains"], c["serving"]) for c in certs] == [
        ("auto", ["www.example.com"], True)
    ]
    assert _listener_certs(cli) == {certs[0]["arn"]}
    # nothing left to do: a second domains:add and domains:wait change nothing
    code, _, err = cli("domains:add", "www.example.com", "-a", "shop")
    assert code == 0 and "requested" not in err and "serving certificate" not in err
    assert "www.example.com is already a domain of shop" in err
    assert cli("apps:create", "other", "--no-remote")[0] == 0
    code, _, err = cli("domains:add", "WWW.example.com.", "-a", "other")
    assert code == 1 and "www.example.com is already a domain of shop" in err
    code, _, err = cli("domains:remove", "api.example.com", "-a", "shop")
    assert code == 1 and "api.example.com is not a domain of shop" in err
    assert json.loads(cli("certs", "-a", "shop", "--json")[1]) == certs

    code, _, err = cli("certs:remove", certs[0]["id"], "-a", "shop")
    assert code == 1 and "domains:remove www.example.com -a shop" in err
    assert cli("domains:remove", "www.example.com", "-a", "shop")[0] == 0
    assert json.loads(cli("certs", "-a", "shop", "--json")[1]) == []
    assert _listener_certs(cli) == set()


def test_your_own_certificate_replaces_automatic_ones_until_removed(cli, tmp_path):
    import boto3

    for host in ("www.example.com", "api.example.com"):
        assert cli("domains:add", host, "-a", "shop")[0] == 0
    autos = json.loads(cli("certs", "-a", "shop", "--json")[1])
    assert sorted(c["domains"][0] for c in autos) == ["api.example.com", "www.example.com"]

    crt, key = _own_certificate(tmp_path, ["www.example.com"])
    code, out, err = cli("certs:add", str(crt), str(key), "-a", "shop", "--json")
    assert code == 0, err
    added = json.loads(out)
    assert added["kind"] == "custom" and added["serving"] is True
    assert added["domains"] == ["www.example.com"] and added["uncovered"] == ["api.example.com"]
    certs = json.loads(cli("certs", "-a", "shop", "--json")[1])
    assert sorted((c["kind"], tuple(c["domains"])) for c in certs) == [
        ("auto", ("api.example.com",)),
        ("custom", ("www.example.com",)),
    ]
    assert _listener_certs(cli) == {c["arn"] for c in certs}
    assert _domains(cli)["www.example.com"] == "custom: issued (serving)"

    code, _, err = cli("certs:add", str(crt), str(key), "-a", "shop")
    assert code == 0 and "already has this certificate" in err
    assert len(json.loads(cli("certs", "-a", "shop", "--json")[1])) == 2

    # Renewed in place, now for both names: same id, still served, the api one's auto goes.
    renewed = tmp_path / "renewed"
    crt2, key2 = _own_certificate(renewed, ["www.example.com", "api.example.com"])
    code, out, err = cli("certs:update", added["id"], str(crt2), str(key2), "-a", "shop", "--json")
    assert code == 0, err
    updated = json.loads(out)
    assert updated["id"] == added["id"] and updated["serving"] is True
    assert updated["domains"] == ["api.example.com", "www.example.com"]
    certs = json.loads(cli("certs", "-a", "shop", "--json")[1])
    assert [c["kind"] for c in certs] == ["custom"]
    auto_id = autos[0]["id"]
    code, _, err = cli("certs:update", auto_id, str(crt2), str(key2), "-a", "shop")
    assert code == 1 and "is not one of the app's" in err  # deleted when it became unneeded

    code, _, err = cli("certs:remove", added["id"][:8], "-a", "shop")
    assert code == 0, err
    certs = json.loads(cli("certs", "-a", "shop", "--json")[1])
    assert sorted((c["kind"], c["domains"][0]) for c in certs) == [
        ("auto", "api.example.com"),
        ("auto", "www.example.com"),
    ]
    assert _listener_certs(cli) == {c["arn"] for c in certs}

    assert cli("apps:destroy", "-a", "shop", "--confirm", "shop")[0] == 0
    acm = boto3.client("acm", region_name="us-east-1")
    left = acm.list_certificates(Includes={"keyTypes": ["RSA_2048", "EC_prime256v1"]})
    arns = {c["CertificateArn"] for c in left["CertificateSummaryList"]}
    assert arns.isdisjoint({c["arn"] for c in certs})
    assert _listener_certs(cli) == set()


def test_bad_certificate_files_change_nothing(cli, tmp_path):
    crt, key = _own_certificate(tmp_path, ["www.example.com"])
    other_crt, other_key = _own_certificate(tmp_path / "other", ["other.example.com"])
    code, _, err = cli("certs:add", str(crt), str(other_key), "-a", "shop")
    assert code == 1 and "does not belong to the certificate" in err and err.count("\n") == 1
    code, _, err = cli("certs:add", str(tmp_path / "nope.crt"), str(key), "-a", "shop")
    assert code == 1 and "cannot read the certificate file" in err
    code, _, err = cli("certs:remove", "abcdef12", "-a", "shop")
    assert code == 1 and "is not one of the app's" in err
    # Served by SNI, a certificate for another app's name (or the platform's) would answer it.
    for i, names in enumerate(
        [
            ["other.apps.example.org"],
            ["*.apps.example.org"],
            ["*.example.org"],
            ["apps.example.org"],
        ]
    ):
        crt, key = _own_certificate(tmp_path / f"platform{i}", ["www.example.com", *names])
        code, _, err = cli("certs:add", str(crt), str(key), "-a", "shop")
        assert code == 1 and "is the platform's domain" in err and err.count("\n") == 1, names
    assert json.loads(cli("certs", "-a", "shop", "--json")[1]) == []


def test_rename_moves_rules_domains_and_certificates(cli):
    import boto3

    assert cli("domains:add", "www.example.com", "-a", "shop")[0] == 0
    before = json.loads(cli("certs", "-a", "shop", "--json")[1])
    code, _, err = cli("apps:rename", "shop-two", "-a", "shop")
    assert code == 0, err
    assert json.loads(cli("certs", "-a", "shop-two", "--json")[1]) == before
    code, _, err = cli("certs", "-a", "shop", "--json")
    assert code == 1  # no such app any more
    platform = json.loads(cli("platform:info", "--json")[1])
    elbv2 = boto3.client("elbv2", region_name="us-east-1")
    rules = elbv2.describe_rules(ListenerArn=platform["https_listener_arn"])["Rules"]
    hosts = [
        sorted(v for c in r["Conditions"] for v in c.get("HostHeaderConfig", {}).get("Values", []))
        for r in rules
        if not r["IsDefault"]
    ]
    assert hosts == [["shop-two.apps.example.org", "www.example.com"]]


def test_platform_init_takes_your_own_wildcard_certificate(cli, tmp_path):
    crt, key = _own_certificate(tmp_path, ["*.apps.example.org"])
    code, _, err = cli("platform:init", "--cert", str(crt))
    assert code == 1 and "--cert and --key go together" in err
    code, out, err = cli("platform:init", "--cert", str(crt), "--key", str(key), "--json")
    assert code == 0, err
    assert "certificate for *.apps.example.org imported (yours)" in err
    code, _, err = cli("platform:init")
    assert code == 0 and "up to date" in err
    wrong, wrong_key = _own_certificate(tmp_path / "wrong", ["www.example.org"])
    code, _, err = cli("platform:init", "--cert", str(wrong), "--key", str(wrong_key))
    assert code == 1 and "must cover *.apps.example.org" in err and err.count("\n") == 1
