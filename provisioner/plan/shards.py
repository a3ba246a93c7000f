"""Load balancer shards and rule packing: where an app's routing goes, within AWS's quotas.

One Application Load Balancer holds at most 100 target groups (one an app), 100 rules (its
listeners together, their default rules not counted), 5 condition values a rule, 25
certificates and 1000 targets (AWS's defaults; the first cannot be raised). A platform therefore has a list of load balancers, its shards: an app is
placed on the first shard with room for it, and a new shard is made when none has. Pure: the
loads come from the caller (aws/router.py reads them from ELBv2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Quotas:
    """AWS's default quotas for Application Load Balancers."""

    target_groups: int = 100  # per load balancer (not adjustable)
    rules: int = 100  # per load balancer (all its listeners), default rules not counted
    values: int = 5  # condition values per rule
    certificates: int = 25  # per listener, its default certificate not counted
    targets: int = 1000  # per target group
    lb_targets: int = 1000  # per load balancer (all its target groups)
    load_balancers: int = 50  # per region


AWS = Quotas()

# What to tell the user when a quota is reached, by the name the error uses.
QUOTA_NAMES = {
    "target_groups": "target groups per Application Load Balancer",
    "rules": "rules per Application Load Balancer",
    "certificates": "certificates per Application Load Balancer",
    "targets": "targets per target group",
    "lb_targets": "targets per Application Load Balancer",
    "load_balancers": "Application Load Balancers per region",
}


@dataclass(frozen=True)
class Load:
    """What one shard holds: apps (target groups its rules forward to), rules on its HTTPS
    and HTTP listeners, certificates on its HTTPS listener (the default one not counted)."""

    apps: int = 0
    rules: int = 0
    http_rules: int = 0
    certificates: int = 0


@dataclass(frozen=True)
class Need:
    """What one app takes on a shard: its rules (HTTPS, and HTTP when it opts out of the
    redirect) and certificates."""

    rules: int = 1
    http_rules: int = 0
    certificates: int = 0


def full_quota(load: Load, need: Need, quotas: Quotas = AWS, new_app: bool = True) -> str | None:
    """The quota (a key of QUOTA_NAMES) the need would exceed on this shard, or None.

    Each app keeps room for one certificate: a shard takes a new app only while every app it
    holds could still add one HTTPS custom domain, so apps do not have to move when they do."""
    if new_app and load.apps + 1 > quotas.target_groups:
        return "target_groups"
    if load.rules + load.http_rules + need.rules + need.http_rules > quotas.rules:
        return "rules"  # one quota for the load balancer's listeners together
    reserved = max(load.certificates, load.apps) if new_app else load.certificates
    wanted = max(need.certificates, 1) if new_app else need.certificates
    if reserved + wanted > quotas.certificates:
        return "certificates"
    return None


def place(loads: Sequence[Load], need: Need, quotas: Quotas = AWS) -> int:
    """The index of the first shard with room for a new app; len(loads): a new shard."""
    for index, load in enumerate(loads):
        if full_quota(load, need, quotas) is None:
            return index
    return len(loads)


def rules_needed(custom: int, quotas: Quotas = AWS) -> int:
    """Rules for an app with `custom` custom domains: each holds its own hostname and up to
    values - 1 custom ones."""
    per_rule = quotas.values - 1
    return max(1, -(-custom // per_rule))


def pack_hosts(
    own: str, custom: Iterable[str], current: Sequence[Sequence[str]], quotas: Quotas = AWS
) -> list[list[str]]:
    """The host-header values of an app's rules: each rule has the app's own hostname first
    (so that every rule of the app is found by it), then up to values - 1 custom domains.

    Sticky: a domain stays in the rule that holds it (`current`, in priority order), new ones
    fill free places first; so adding or removing a domain never moves another one between
    rules (which would leave it unrouted for a moment). Rules left with no custom domain go,
    except the first."""
    wanted = sorted(set(custom) - {own})
    per_rule = quotas.values - 1
    kept: list[list[str]] = []
    placed: set[str] = set()
    for hosts in current:
        still = [h for h in hosts if h in wanted and h not in placed][:per_rule]
        placed.update(still)
        kept.append(still)
    new = [h for h in wanted if h not in placed]
    for customs in kept:
        while new and len(customs) < per_rule:
            customs.append(new.pop(0))
    while new:
        kept.append(new[:per_rule])
        new = new[per_rule:]
    packed = [sorted(c) for i, c in enumerate(kept) if c or i == 0]
    return [[own, *c] for c in (packed or [[]])]
