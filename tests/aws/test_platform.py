"""Platform init and host launches against moto: idempotent, tagged, locked down."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cli_support import network_counts

from provisioner.aws import instances
from provisioner.aws.platform import ensure_platform, load_platform
from provisioner.aws.tags import PLATFORM_TAG
from provisioner.aws.teardown import destroy_platform
from provisioner.errors import DynoformError, NoPlatform
from provisioner.remote.hostkeys import cloud_config, generate_host_keys
from provisioner.targets import Target

SSH_CIDR = "203.0.113.7/32"


def _count(aws) -> dict[str, int]:
    return network_counts(aws, "plat") | {
        "keys": len(aws.ec2.describe_key_pairs()["KeyPairs"]),
        "lbs": len(aws.elbv2.describe_load_balancers()["LoadBalancers"]),
        "buckets": len(aws.s3.list_buckets()["Buckets"]),
    }


def test_load_before_init_is_a_clear_error(aws, target, config_home):
    with pytest.raises(DynoformError, match="platform:init"):
        load_platform(aws, target)


def test_init_twice_creates_each_resource_once(aws, target, config_home):
    first = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    counts = _count(aws)
    assert counts == {
        "vpcs": 1,
        "subnets": 3,
        "igws": 1,
        "route_tables": 1,
        "groups": 2,
        "keys": 1,
        "lbs": 1,
        "buckets": 1,
    }
    assert first.created
    second = ensure_platform(aws, target)
    assert second.created == []
    assert _count(aws) == counts
    assert second.as_dict() == first.as_dict()
    assert load_platform(aws, target).as_dict() == first.as_dict()
    listeners = aws.elbv2.describe_listeners(LoadBalancerArn=first.lb_arn)["Listeners"]
    assert sorted((ln["Port"], ln["Protocol"]) for ln in listeners) == [
        (80, "HTTP"),
        (443, "HTTPS"),
    ]


def test_network_layout_and_tags(aws, target, config_home):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    vpc = aws.ec2.describe_vpcs(VpcIds=[platform.vpc_id])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.42.0.0/16"
    subnets = aws.ec2.describe_subnets(SubnetIds=platform.subnet_ids)["Subnets"]
    assert len({s["AvailabilityZone"] for s in subnets}) == 3
    assert sorted(s["CidrBlock"] for s in subnets) == [
        "10.42.0.0/20",
        "10.42.16.0/20",
        "10.42.32.0/20",
    ]
    for subnet in subnets:
        tags = {t["Key"]: t["Value"] for t in subnet["Tags"]}
        assert tags[PLATFORM_TAG] == "plat"
    routes = aws.ec2.describe_route_tables(RouteTableIds=[platform.route_table_id])["RouteTables"][
        0
    ]
    assert any(r.get("GatewayId") == platform.igw_id for r in routes["Routes"])
    assert {a["SubnetId"] for a in routes["Associations"] if "SubnetId" in a} == set(
        platform.subnet_ids
    )
    lb_tags = aws.elbv2.describe_tags(ResourceArns=[platform.lb_arn])["TagDescriptions"][0]["Tags"]
    assert {"Key": PLATFORM_TAG, "Value": "plat"} in lb_tags


def test_local_target_uses_the_benchmark_range(aws, config_home):
    local = Target("local", kind="local", platform="plat")
    platform = ensure_platform(aws, local)
    vpc = aws.ec2.describe_vpcs(VpcIds=[platform.vpc_id])["Vpcs"][0]
    assert vpc["CidrBlock"] == "198.18.0.0/16"
    group = aws.ec2.describe_security_groups(GroupIds=[platform.runner_sg_id])["SecurityGroups"][0]
    ssh = [p for p in group["IpPermissions"] if p["FromPort"] == 22]
    assert [r["CidrIp"] for r in ssh[0]["IpRanges"]] == ["198.18.0.1/32"]


def test_security_group_rules(aws, target, config_home):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    ensure_platform(aws, target, ssh_cidr=SSH_CIDR)  # no duplicate rules
    groups = {
        g["GroupId"]: g
        for g in aws.ec2.describe_security_groups(
            GroupIds=[platform.runner_sg_id, platform.lb_sg_id]
        )["SecurityGroups"]
    }
    lb = groups[platform.lb_sg_id]["IpPermissions"]
    assert sorted((p["FromPort"], p["ToPort"]) for p in lb) == [(80, 80), (443, 443)]
    assert all([r["CidrIp"] for r in p["IpRanges"]] == ["0.0.0.0/0"] for p in lb)
    runner = groups[platform.runner_sg_id]["IpPermissions"]
    assert len(runner) == 2
    ssh = next(p for p in runner if p["FromPort"] == 22)
    assert [r["CidrIp"] for r in ssh["IpRanges"]] == [SSH_CIDR]
    # and from the other runners (the controller), never from the load balancer
    assert [g["GroupId"] for g in ssh["UserIdGroupPairs"]] == [platform.runner_sg_id]
    dynos = next(p for p in runner if p["FromPort"] != 22)
    assert (dynos["FromPort"], dynos["ToPort"]) == (1024, 65535)
    assert [g["GroupId"] for g in dynos["UserIdGroupPairs"]] == [platform.lb_sg_id]
    assert not dynos.get("IpRanges")


def test_http_redirects_to_https_and_https_answers_404(aws, target, config_home):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    http = aws.elbv2.describe_listeners(ListenerArns=[platform.listener_arn])["Listeners"][0]
    assert http["Port"] == 80 and http["Protocol"] == "HTTP"
    (redirect,) = http["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"] == {
        "Protocol": "HTTPS",
        "Port": "443",
        "Host": "#{host}",
        "Path": "/#{path}",
        "Query": "#{query}",
        "StatusCode": "HTTP_301",
    }
    https = aws.elbv2.describe_listeners(ListenerArns=[platform.https_listener_arn])["Listeners"]
    assert https[0]["Port"] == 443 and https[0]["Protocol"] == "HTTPS"
    assert https[0]["Certificates"][0]["CertificateArn"] == platform.certificate_arn
    action = https[0]["DefaultActions"][0]
    assert action["Type"] == "fixed-response"
    assert action["FixedResponseConfig"]["StatusCode"] == "404"
    assert "dynoform" in action["FixedResponseConfig"]["MessageBody"]
    assert platform.listener_arns == [platform.https_listener_arn]


def test_aws_certificate_is_a_dns_validated_wildcard(aws, target, config_home):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    cert = aws.client("acm").describe_certificate(CertificateArn=platform.certificate_arn)
    cert = cert["Certificate"]
    assert cert["DomainName"] == "*.plat.example.com"
    assert set(cert["SubjectAlternativeNames"]) == {"*.plat.example.com", "plat.example.com"}
    assert cert["Type"] == "AMAZON_ISSUED" and cert["Status"] == "ISSUED"
    assert {o["ValidationMethod"] for o in cert["DomainValidationOptions"]} == {"DNS"}
    tags = aws.client("acm").list_tags_for_certificate(CertificateArn=platform.certificate_arn)
    assert {"Key": PLATFORM_TAG, "Value": "plat"} in tags["Tags"]


def test_validation_records_go_to_route53_when_the_zone_exists(aws, config_home):
    target = Target("test", region="us-east-1", platform="zoned", domain="apps.example.org")
    zone = aws.client("route53").create_hosted_zone(Name="example.org", CallerReference="x")
    zone_id = zone["HostedZone"]["Id"]
    said: list[str] = []
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR, say=said.append)
    sets = aws.client("route53").list_resource_record_sets(HostedZoneId=zone_id)
    cnames = {  # AWS writes the `*` as \052, moto as it is
        r["Name"].replace("\\052", "*"): r["ResourceRecords"][0]["Value"]
        for r in sets["ResourceRecordSets"]
        if r["Type"] == "CNAME"
    }
    assert sorted(cnames) == [
        "*.apps.example.org.",  # every app's name: the first load balancer (shard 0)
        "_d930b28be6c5927595552b219965053e.apps.example.org.",
    ]
    assert cnames["*.apps.example.org."] == platform.lb_dns
    assert any("Route 53" in line for line in said)


def test_validation_records_are_printed_without_a_zone_and_init_waits(
    aws, config_home, monkeypatch
):
    import moto.settings

    from provisioner.aws import tlscerts

    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", 1)  # pending for a second
    monkeypatch.setattr(tlscerts, "CERT_POLL_SECONDS", 0.2)
    said: list[str] = []
    target = Target("test", region="us-east-1", platform="nozone")  # no zone for its domain
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR, say=said.append)
    assert any("CNAME" in line and "acm-validations.aws" in line for line in said)
    assert any(line.startswith("waiting for ACM") for line in said)
    assert f"point *.nozone.example.com at {platform.lb_dns} (a CNAME) where" in "\n".join(said)
    cert = aws.client("acm").describe_certificate(CertificateArn=platform.certificate_arn)
    assert cert["Certificate"]["Status"] == "ISSUED"


def test_local_certificate_comes_from_the_local_ca(aws, config_home):
    from cryptography import x509

    from provisioner import authority
    from provisioner.localcloud import motofix

    local = Target("local", kind="local", platform="plat")
    platform = ensure_platform(aws, local)
    acm = aws.client("acm")
    held = acm.get_certificate(CertificateArn=platform.certificate_arn)
    cert = x509.load_pem_x509_certificate(held["Certificate"].encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"*.localhost", "localhost"}
    ca_pem = authority.ca_cert_path(local.local.ca_dir).read_bytes()
    assert authority.signed_by(held["Certificate"].encode(), ca_pem)
    held_key = motofix.acm_key(platform.certificate_arn)  # what the local LB serves with
    assert held_key is not None and authority.signed_by(held["Certificate"].encode(), held_key[1])
    described = acm.describe_certificate(CertificateArn=platform.certificate_arn)
    assert described["Certificate"]["Type"] == "IMPORTED"
    again = ensure_platform(aws, local)
    assert again.created == [] and again.certificate_arn == platform.certificate_arn
    assert len(acm.list_certificates(Includes={"keyTypes": ["EC_prime256v1"]})[
        "CertificateSummaryList"
    ]) == 1  # fmt: skip


def _listener_default(aws, platform) -> str:
    listener = aws.elbv2.describe_listeners(ListenerArns=[platform.https_listener_arn])
    return str(listener["Listeners"][0]["Certificates"][0]["CertificateArn"])


@pytest.mark.parametrize("kind", ["aws", "local"])
def test_your_own_platform_certificate_is_imported_kept_and_renewed_in_place(
    aws, config_home, tmp_path, kind
):
    from tls_support import user_cert

    from provisioner.model.tls import parse_bundle

    if kind == "aws":
        target = Target("test", region="us-east-1", platform="plat", domain="apps.example.org")
        names = ["*.apps.example.org", "apps.example.org"]
    else:
        target = Target("local", kind="local", platform="plat")
        names = ["*.localhost", "localhost"]
    first = ensure_platform(aws, target, SSH_CIDR)
    own = user_cert(tmp_path / "one", names)
    bundle = parse_bundle(own.leaf + own.chain, own.key)
    mine = ensure_platform(aws, target, SSH_CIDR, bundle=bundle)
    assert _listener_default(aws, mine) == mine.certificate_arn
    acm = aws.client("acm")
    assert acm.get_certificate(CertificateArn=mine.certificate_arn)["Certificate"].strip() == (
        own.leaf.decode().strip()
    )
    if kind == "aws":  # ACM's own certificate is replaced by a new one, then deleted
        assert mine.certificate_arn != first.certificate_arn
        assert any("deleted the certificate it replaced" in c for c in mine.created)
        with pytest.raises(Exception, match="ResourceNotFound"):
            acm.describe_certificate(CertificateArn=first.certificate_arn)
    else:  # the local CA's one was imported too: yours goes in its place
        assert mine.certificate_arn == first.certificate_arn
    again = ensure_platform(aws, target, SSH_CIDR)  # without --cert: yours stays
    assert again.created == [] and again.certificate_arn == mine.certificate_arn
    assert ensure_platform(aws, target, SSH_CIDR, bundle=bundle).created == []

    renewed = user_cert(tmp_path / "two", names)
    bundle2 = parse_bundle(renewed.leaf + renewed.chain, renewed.key)
    third = ensure_platform(aws, target, SSH_CIDR, bundle=bundle2)
    assert third.certificate_arn == mine.certificate_arn  # re-imported in place
    assert any("re-imported (yours)" in c for c in third.created)
    held = acm.get_certificate(CertificateArn=third.certificate_arn)["Certificate"]
    assert held.strip() == renewed.leaf.decode().strip()


def test_a_platform_certificate_must_cover_the_app_wildcard(aws, target, config_home, tmp_path):
    from tls_support import user_cert

    from provisioner.errors import ValidationError
    from provisioner.model.tls import parse_bundle

    own = user_cert(tmp_path, ["www.example.org"])
    with pytest.raises(ValidationError, match=r"must cover \*\.plat\.example\.com"):
        ensure_platform(aws, target, SSH_CIDR, bundle=parse_bundle(own.leaf, own.key))


def test_older_platform_is_upgraded_to_https(aws, target, config_home):
    """A platform whose HTTP listener answered 404 gets HTTPS and the redirect on init."""
    first = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    aws.elbv2.delete_listener(ListenerArn=first.https_listener_arn)
    aws.elbv2.modify_listener(
        ListenerArn=first.listener_arn,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
    )
    second = ensure_platform(aws, target)
    assert "HTTP listener :80 now redirects to HTTPS" in second.created
    assert "HTTPS listener :443 (404 page)" in second.created
    assert ensure_platform(aws, target).created == []


def test_key_pair_generated_0600_and_reused(aws, target, config_home):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    key = config_home / "dynoform" / "keys" / "test" / "id_ed25519"
    assert platform.key_path == str(key)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    before = key.read_bytes()
    aws.ec2.delete_key_pair(KeyName=platform.key_name)  # e.g. the local cloud restarted
    ensure_platform(aws, target)
    assert key.read_bytes() == before
    assert aws.ec2.describe_key_pairs(KeyNames=[platform.key_name])["KeyPairs"]


def _seed_debian_parameter(aws) -> str:
    """moto refuses PutParameter under /aws/ (as AWS does): publish it in the backend."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ssm.models import Parameter, ssm_backends

    ami = aws.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ssm_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]._parameters[instances.DEBIAN_13_PARAMETER].append(
        Parameter(
            account_id=DEFAULT_ACCOUNT_ID,
            name=instances.DEBIAN_13_PARAMETER,
            value=ami,
            parameter_type="String",
            description="Debian 13",
            allowed_pattern=None,
            keyid=None,
            last_modified_date=datetime.now(UTC),
            version=1,
            data_type="aws:ec2:image",
        )
    )
    return ami


def test_launch_requests_imdsv2_encryption_and_tags(aws, target, config_home):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    ami = _seed_debian_parameter(aws)
    assert instances.debian_ami(aws) == ami
    user_data = cloud_config(generate_host_keys())
    request = instances.launch_request(
        platform,
        ami=ami,
        device=instances.root_device(aws, ami),
        instance_type="t3.small",
        subnet_id=platform.subnet_ids[1],
        user_data=user_data,
    )
    host = instances.launch(aws, request)
    instance = aws.ec2.describe_instances(InstanceIds=[host.id])["Reservations"][0]["Instances"][0]
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert request["IamInstanceProfile"] == {"Name": platform.instance_profile}
    assert instance["IamInstanceProfile"]["Arn"].endswith(f"/{platform.instance_profile}")
    assert instance["KeyName"] == platform.key_name
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [platform.runner_sg_id]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags[PLATFORM_TAG] == "plat" and tags["dynoform:role"] == "runner"
    volume_ids = [m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]]
    volumes = aws.ec2.describe_volumes(VolumeIds=volume_ids)["Volumes"]
    assert volumes and all(v["Encrypted"] for v in volumes)
    assert instances.user_data_of(aws, host.id) == user_data
    assert [h.id for h in instances.list_hosts(aws, "plat")] == [host.id]
    assert (
        host.zone
        == aws.ec2.describe_subnets(SubnetIds=[platform.subnet_ids[1]])["Subnets"][0][
            "AvailabilityZone"
        ]
    )


def test_missing_debian_parameter_is_a_clear_error(aws):
    with pytest.raises(DynoformError, match="Debian 13 AMI"):
        instances.debian_ami(aws)


def test_spread_fills_the_emptiest_zone_first():
    subnets = {"s-a": "a", "s-b": "b", "s-c": "c"}
    assert instances.spread(subnets, [], 4) == ["s-a", "s-b", "s-c", "s-a"]
    assert instances.spread(subnets, ["a", "a", "b"], 3) == ["s-c", "s-b", "s-c"]


def test_destroy_removes_everything(aws, target, config_home):
    platform = ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
    ami = _seed_debian_parameter(aws)
    request = instances.launch_request(
        platform, ami=ami, device="/dev/xvda", instance_type="t3.small",
        subnet_id=platform.subnet_ids[0], user_data="#cloud-config\n{}\n",
    )  # fmt: skip
    instances.launch(aws, request)
    destroy_platform(aws, target, delete_state=True)
    counts = _count(aws)
    assert counts == dict.fromkeys(counts, 0)
    assert aws.client("acm").list_certificates()["CertificateSummaryList"] == []
    assert instances.list_hosts(aws, "plat") == []


def test_a_host_that_fails_is_reported_and_terminated(aws, config_home, monkeypatch):
    """SSH never answers (a loopback range with nothing listening): the host is terminated."""
    from provisioner import fleet
    from provisioner.context import Context
    from provisioner.ops import hosts

    local = Target("loop", kind="local", platform="loop", vpc_cidr="127.42.0.0/16")
    loop_aws = type(aws)(local)
    loop_aws.__dict__["endpoint_url"] = None  # moto in process, not the local cloud's server
    monkeypatch.setattr(fleet, "BOOT_TIMEOUT", 1.0)
    _seed_debian_parameter(loop_aws)
    seen: list[tuple[int, str, str]] = []
    with Context(local, aws=loop_aws) as ctx:
        added = hosts.add(ctx, 2, "t3.small", lambda *event: seen.append(event))
        assert added.ready == [] and [o.item for o in added.failed] == [0, 1]
        assert all("cannot connect to host i-" in (o.error or "") for o in added.failed)
        assert ctx.fleet().hosts() == []  # terminated, not left half-configured
        ids = {host_id for _slot, host_id, _state in seen if host_id}
        assert len(ids) == 2
        for host_id in ids:
            pin = ctx.fleet().pin(host_id)
            assert pin["bootstrapped"] is False and "cannot connect" in pin["failed"]
    assert any(state == "failed, terminating" for _slot, _id, state in seen)


def test_a_host_the_platform_lacks_is_not_found(aws, target, config_home):
    from provisioner.context import Context
    from provisioner.errors import NotFound
    from provisioner.ops import hosts

    with Context(target, aws=aws) as ctx:
        with pytest.raises(NoPlatform):
            hosts.list_hosts(ctx)
        ensure_platform(aws, target, ssh_cidr=SSH_CIDR)
        with pytest.raises(NotFound, match="no host i-0123 in platform 'plat'"):
            hosts.remove(ctx, "i-0123")


def test_platform_operations_keep_the_record_other_operations_read(aws, target, config_home):
    from provisioner.context import PLATFORM_DOC, Context
    from provisioner.ops import platform as ops

    said: list[str] = []
    with Context(target, say=said.append, aws=aws) as ctx:
        with pytest.raises(NoPlatform):
            ops.info(ctx)
        made = ops.init(ctx, ssh_cidr=SSH_CIDR)
        assert made.created and ctx.store.docs.get(PLATFORM_DOC).data == made.as_dict()
        assert ops.info(ctx).as_dict() == made.as_dict() == ctx.platform(False).as_dict()
        assert ops.init(ctx, ssh_cidr=SSH_CIDR).created == []

        done = ops.destroy(ctx)
        assert f"load balancer {made.lb_arn.split('/')[-2]}" in done
        assert ctx.store.docs.get(PLATFORM_DOC) is None  # the bucket stays, the record goes
        with pytest.raises(NoPlatform):
            ctx.platform(create=False)
        assert f"bucket {ctx.store.docs.bucket}" in ops.destroy(ctx, delete_state=True)


def test_init_refuses_a_new_platform_with_a_bad_name_but_upgrades_an_old_one(aws, config_home):
    from provisioner.context import Context
    from provisioner.errors import ValidationError
    from provisioner.ops import platform as ops

    old = Target("old", region="us-east-1", platform="an-older-platform-named-long")
    new = Target("new", region="us-east-1", platform="a-new-platform-named-too-long")
    with Context(new, aws=aws) as ctx, pytest.raises(ValidationError, match="platform name"):
        ops.init(ctx, ssh_cidr=SSH_CIDR)
    ensure_platform(aws, old, ssh_cidr=SSH_CIDR)  # made before names were checked
    with Context(old, aws=aws) as ctx:
        assert ops.init(ctx, ssh_cidr=SSH_CIDR).created == []
