"""The platform's load balancer and its two listeners: HTTP :80 redirecting to HTTPS, and
HTTPS :443 with the platform's certificate, whose default answer is the 404 page."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from provisioner.aws.router import fixed_response_action
from provisioner.aws.session import Aws
from provisioner.aws.tags import PLATFORM_TAG, Finder, shard_name, tags
from provisioner.errors import DynoformError
from provisioner.plan.shards import AWS as AWS_QUOTAS

NOT_FOUND_PAGE = (
    "<!doctype html><title>No such app</title>"
    "<h1>No such app</h1><p>There is no app at this address. "
    "<small>dynoform</small></p>"
)
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


def not_found_action() -> list[dict[str, Any]]:
    return fixed_response_action(404, NOT_FOUND_PAGE)


def https_redirect_action() -> list[dict[str, Any]]:
    """HTTP -> the same URL on HTTPS, permanently (ALB placeholders keep host, path, query)."""
    return [
        {
            "Type": "redirect",
            "RedirectConfig": {
                "Protocol": "HTTPS",
                "Port": "443",
                "Host": "#{host}",
                "Path": "/#{path}",
                "Query": "#{query}",
                "StatusCode": "HTTP_301",
            },
        }
    ]


def same_actions(have: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    """Whether listener default actions match (ignoring fields AWS adds, such as Order)."""
    if len(have) != len(want):
        return False
    for got, wanted in zip(have, want, strict=True):
        for key, value in wanted.items():
            current = got.get(key)
            if isinstance(value, dict):
                if not isinstance(current, dict) or any(
                    str(current.get(k)) != str(v) for k, v in value.items()
                ):
                    return False
            elif current != value:
                return False
    return True


def find_load_balancer(b: Finder, name: str) -> tuple[str, str] | None:
    """A load balancer's ARN and DNS name, by name; None when there is none."""
    try:
        found = b.aws.elbv2.describe_load_balancers(Names=[name])["LoadBalancers"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "LoadBalancerNotFound":
            raise
        return None
    return (str(found[0]["LoadBalancerArn"]), str(found[0]["DNSName"])) if found else None


def platform_load_balancers(aws: Aws, platform: str) -> list[dict[str, Any]]:
    """Every load balancer of the platform, whichever shards exist (an interrupted destroy
    may leave shard 3 without shard 2): the region's list read by name, each taken only when
    tagged with the platform (a name cut from a long one may be another platform's)."""
    first, prefix = shard_name(platform, 0), shard_name(platform, "")
    pages = aws.elbv2.get_paginator("describe_load_balancers").paginate()
    named = [
        lb
        for page in pages
        for lb in page.get("LoadBalancers", [])
        if lb["LoadBalancerName"] == first
        or (
            lb["LoadBalancerName"].startswith(prefix)
            and lb["LoadBalancerName"][len(prefix) :].isdigit()
        )
    ]
    owned: list[dict[str, Any]] = []
    for start in range(0, len(named), 20):  # DescribeTags takes 20 ARNs at a time
        chunk = named[start : start + 20]
        arns = [lb["LoadBalancerArn"] for lb in chunk]
        described = aws.elbv2.describe_tags(ResourceArns=arns)["TagDescriptions"]
        mine = {
            d["ResourceArn"]
            for d in described
            if {"Key": PLATFORM_TAG, "Value": platform} in d.get("Tags", [])
        }
        owned += [lb for lb in chunk if lb["LoadBalancerArn"] in mine]
    return owned


def count_load_balancers(b: Finder) -> int:
    """The region's Application Load Balancers, ours or not (AWS's quota counts them all;
    network and gateway load balancers have quotas of their own)."""
    pages = b.aws.elbv2.get_paginator("describe_load_balancers").paginate()
    return sum(
        1
        for page in pages
        for lb in page.get("LoadBalancers", [])
        if lb.get("Type", "application") == "application"
    )


def load_balancer(b: Finder, subnet_ids: list[str], lb_sg: str, shard: int = 0) -> tuple[str, str]:
    """The load balancer's ARN and DNS name (of a shard: 0, the platform's first)."""
    name = shard_name(b.name, shard)
    found = find_load_balancer(b, name)
    if found:
        return found
    b.missing("load balancer")
    limit = AWS_QUOTAS.load_balancers
    if count_load_balancers(b) >= limit:
        raise DynoformError(
            f"cannot make load balancer {name}: AWS's quota of {limit} Application Load "
            "Balancers per region is reached",
            "ask AWS to raise it (Service Quotas, Elastic Load Balancing), or delete unused ones",
        )
    lb = b.aws.elbv2.create_load_balancer(
        Name=name,
        Subnets=subnet_ids,
        SecurityGroups=[lb_sg],
        Scheme="internet-facing",
        Type="application",
        IpAddressType="ipv4",
        Tags=tags(b.name, "lb" if shard == 0 else f"lb-{shard}"),
    )["LoadBalancers"][0]
    b.created.append(f"load balancer {name}")
    return str(lb["LoadBalancerArn"]), str(lb["DNSName"])


def _by_port(b: Finder, lb_arn: str) -> dict[int, dict[str, Any]]:
    found = b.aws.elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]
    return {int(ln["Port"]): ln for ln in found}


def http_listener(b: Finder, lb_arn: str) -> str:
    """HTTP :80, whose default action redirects to HTTPS (an older 404 default is changed)."""
    existing = _by_port(b, lb_arn).get(80)
    if existing is not None:
        arn = str(existing["ListenerArn"])
        if b.create and not same_actions(
            existing.get("DefaultActions", []), https_redirect_action()
        ):
            b.aws.elbv2.modify_listener(ListenerArn=arn, DefaultActions=https_redirect_action())
            b.created.append("HTTP listener :80 now redirects to HTTPS")
        return arn
    b.missing("HTTP listener")
    listener = b.aws.elbv2.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="HTTP",
        Port=80,
        DefaultActions=https_redirect_action(),
        Tags=tags(b.name, "listener-http"),
    )["Listeners"][0]
    b.created.append("HTTP listener :80 (redirect to HTTPS)")
    return str(listener["ListenerArn"])


def https_listener(b: Finder, lb_arn: str, certificate_arn: str) -> str:
    """HTTPS :443 with the platform's certificate; unknown hosts get the 404 page."""
    existing = _by_port(b, lb_arn).get(443)
    if existing is not None:
        arn = str(existing["ListenerArn"])
        current = [c.get("CertificateArn") for c in existing.get("Certificates", [])]
        if b.create and certificate_arn and current[:1] != [certificate_arn]:
            b.aws.elbv2.modify_listener(
                ListenerArn=arn, Certificates=[{"CertificateArn": certificate_arn}]
            )
            b.created.append("HTTPS listener :443 certificate replaced")
        return arn
    b.missing("HTTPS listener")
    listener = b.aws.elbv2.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="HTTPS",
        Port=443,
        SslPolicy=TLS_POLICY,
        Certificates=[{"CertificateArn": certificate_arn}],
        DefaultActions=not_found_action(),
        Tags=tags(b.name, "listener-https"),
    )["Listeners"][0]
    b.created.append("HTTPS listener :443 (404 page)")
    return str(listener["ListenerArn"])
