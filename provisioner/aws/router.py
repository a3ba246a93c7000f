"""The router table on ELBv2: per app a target group, a host-header rule, and web dyno targets.

On AWS an Application Load Balancer serves it; on the local cloud the same API calls reach moto
and the local cloud's HAProxy follows them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from provisioner.aws.rules import create_rule, listener_rules
from provisioner.errors import DynoformError
from provisioner.plan.shards import (
    AWS,
    QUOTA_NAMES,
    Load,
    Need,
    Quotas,
    full_quota,
    pack_hosts,
    place,
    rules_needed,
)

SHARD_TAG = "dynoform:shard"  # on an app's target group: the load balancer it is placed on
MAINTENANCE_PAGE = (
    "<!doctype html><title>Offline for maintenance</title>"
    "<h1>This app is offline for maintenance</h1><p>Please check back soon.</p>"
)


@dataclass(frozen=True)
class RouterTarget:
    ip: str
    port: int


def target_group_name(platform: str, app: str) -> str:
    """ELBv2 names are at most 32 characters: a readable prefix plus a hash keeps them unique."""
    digest = hashlib.sha256(f"{platform}/{app}".encode()).hexdigest()[:8]
    return f"df-{app[:20]}-{digest}"


def app_hostnames(app: str, domain: str, custom: Iterable[str] = ()) -> list[str]:
    """The app's hostnames: <app>.<domain>, then the custom ones. Custom names equal to or
    under the platform domain never reach a rule (a record from before domains:add refused
    them could hold one): they belong to other apps. Rules hold them 5 at most
    (plan.shards.pack_hosts)."""
    platform_names = [c for c in custom if c == domain or c.endswith(f".{domain}")]
    return [f"{app}.{domain}", *sorted(set(custom) - set(platform_names))]


def forward_action(tg_arn: str) -> list[dict[str, Any]]:
    return [{"Type": "forward", "TargetGroupArn": tg_arn}]


def fixed_response_action(status: int, html: str) -> list[dict[str, Any]]:
    """An ALB action that answers with a page itself (404 for unknown hosts, 503 maintenance)."""
    return [
        {
            "Type": "fixed-response",
            "FixedResponseConfig": {
                "StatusCode": str(status),
                "ContentType": "text/html",
                "MessageBody": html,
            },
        }
    ]


def maintenance_action() -> list[dict[str, Any]]:
    return fixed_response_action(503, MAINTENANCE_PAGE)


@dataclass(frozen=True)
class ShardListeners:
    """One load balancer of the platform as the router sees it: the listener app rules go on
    (HTTPS; HTTP on a platform from before HTTPS) and, when separate, the HTTP listener
    (rules there only for apps that opt out of the redirect)."""

    rules: str
    http: str | None = None


def quota_error(quota: str, where: str, limits: Quotas, hint: str) -> DynoformError:
    """One line naming the AWS quota reached, and what to do."""
    return DynoformError(
        f"{where}: AWS's quota of {getattr(limits, quota)} {QUOTA_NAMES[quota]} is reached",
        hint,
    )


class RouterTable:
    """ELBv2 calls for one platform's load balancers (its shards).

    Every app is placed on one shard (plan.shards), recorded as a tag of its target group
    (apps from before shards have none: shard 0). It has rules on that shard's HTTPS listener,
    each for its own hostname and up to 4 custom domains; the HTTP listener redirects every
    request to HTTPS by its default action, so an app has rules there only when it opts out of
    the redirect (`plain_http`): then plain HTTP reaches its dynos too. `grow` makes a new
    shard when none has room (None: the platform cannot grow, the quota error says so).
    """

    def __init__(
        self,
        elbv2: Any,
        platform: str,
        vpc_id: str,
        listener_arns: list[str],
        domain: str,
        http_listener_arn: str | None = None,
        shards: list[ShardListeners] | None = None,
        grow: Callable[[], ShardListeners] | None = None,
        reload: Callable[[], list[ShardListeners]] | None = None,
        placed: Callable[[str, int], None] | None = None,
        limits: Quotas = AWS,
    ) -> None:
        self.elbv2 = elbv2
        self.platform = platform
        self.vpc_id = vpc_id
        self.listener_arns = listener_arns  # shard 0's
        self.domain = domain
        self.http_listener_arn = http_listener_arn
        self.shards = shards or [ShardListeners(listener_arns[0], http_listener_arn)]
        self.grow = grow
        self.reload = reload
        self.placed = placed  # told where a new app was placed (its name's DNS record)
        self.limits = limits
        self._placed: dict[str, int] = {}
        self._pinned: dict[str, str | None] = {}  # app -> its target group's ARN (pinned)

    # target groups and shards ---------------------------------------------------------------
    def _group(self, app: str) -> dict[str, Any] | None:
        try:
            groups = self.elbv2.describe_target_groups(
                Names=[target_group_name(self.platform, app)]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TargetGroupNotFound":
                return None
            raise
        return dict(groups["TargetGroups"][0])

    @contextmanager
    def pinned(self, app: str) -> Iterator[None]:
        """Within: the app's target group is looked up once, not by every call that needs it
        (a rollout's register, each of its health polls, deregister, the drain's delay).
        Only for the length of one operation: another command may remove the app."""
        self._pinned[app] = None
        try:
            yield
        finally:
            self._pinned.pop(app, None)

    def target_group_arn(self, app: str) -> str | None:
        arn = self._pinned.get(app)
        if arn:
            return arn
        group = self._group(app)
        arn = None if group is None else str(group["TargetGroupArn"])
        if arn and app in self._pinned:
            self._pinned[app] = arn
        return arn

    def shard_of(self, app: str) -> int | None:
        """The shard the app is placed on (None: not placed yet, it has no target group)."""
        if app in self._placed:
            return self._placed[app]
        arn = self.target_group_arn(app)
        if arn is None:
            return None
        described = self.elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"]
        labels = {t["Key"]: t["Value"] for d in described for t in d.get("Tags", [])}
        shard = int(labels.get(SHARD_TAG, "0"))
        self._placed[app] = shard
        return shard

    def listeners_of(self, app: str) -> ShardListeners:
        """The listeners of the app's shard (shard 0's for an app not placed yet)."""
        shard = self.shard_of(app) or 0
        if shard >= len(self.shards) and self.reload is not None:
            self.shards = self.reload()
        if shard >= len(self.shards):
            raise DynoformError(
                f"{app} is placed on load balancer shard {shard}, which the platform lacks",
                "run `dynoform platform:init` to find or make its load balancers",
            )
        return self.shards[shard]

    def load(self, shard: int) -> Load:
        """What a shard holds now, as ELBv2 counts it against the quotas."""
        listeners = self.shards[shard]
        rules = [r for r in self._rules(listeners.rules) if not r.get("IsDefault")]
        http: list[dict[str, Any]] = []
        if listeners.http and listeners.http != listeners.rules:
            http = [r for r in self._rules(listeners.http) if not r.get("IsDefault")]
        groups = {
            str(a["TargetGroupArn"])
            for r in [*rules, *http]
            for a in r.get("Actions", [])
            if a.get("TargetGroupArn")
        }
        # An app in maintenance forwards nowhere, yet holds its place: counted by its own name.
        own = {h for r in [*rules, *http] for h in _hosts(r) if self._own_name(h)}
        apps = max(len(groups), len(own))
        return Load(apps, len(rules), len(http), len(self._certificates(listeners.rules)))

    def _own_name(self, host: str) -> bool:
        """Whether a rule's host is an app's own `<app>.<domain>` (custom domains are never
        under the platform's domain)."""
        label, _, rest = host.partition(".")
        return rest == self.domain and bool(label)

    def _certificates(self, listener_arn: str) -> set[str]:
        """The listener's certificates besides its default one."""
        arns: set[str] = set()
        kwargs: dict[str, Any] = {"ListenerArn": listener_arn}
        while True:
            page = self.elbv2.describe_listener_certificates(**kwargs)
            certs = page.get("Certificates", [])
            arns |= {str(c["CertificateArn"]) for c in certs if not c.get("IsDefault")}
            if not page.get("NextMarker"):
                return arns
            kwargs["Marker"] = page["NextMarker"]

    def _place(self, app: str, need: Need) -> int:
        """A shard with room for a new app: the first, else a new one (`grow`)."""
        loads = [self.load(i) for i in range(len(self.shards))]
        shard = place(loads, need, self.limits)
        if shard == len(self.shards) and self.reload is not None:
            self.shards = self.reload()  # another process may have made one meanwhile
            loads += [self.load(i) for i in range(len(loads), len(self.shards))]
            shard = place(loads, need, self.limits)
        if shard == len(self.shards):
            quota = full_quota(Load(), need, self.limits)
            if quota is not None:
                raise quota_error(quota, f"{app} alone", self.limits, "remove some of its domains")
            if self.grow is None:
                quota = full_quota(loads[-1], need, self.limits) or "target_groups"
                raise quota_error(
                    quota,
                    "every load balancer of the platform",
                    self.limits,
                    "destroy an app you no longer need",
                )
            self.shards.append(self.grow())
        return shard

    def ensure_target_group(
        self, app: str, health_path: str = "/", need: Need | None = None
    ) -> str:
        """The app's target group; a new app is placed on a shard with room first."""
        arn = self.target_group_arn(app)
        if arn is not None:
            return arn
        shard = self._place(app, need or Need())
        created = self.elbv2.create_target_group(
            Name=target_group_name(self.platform, app),
            Protocol="HTTP",
            Port=80,
            VpcId=self.vpc_id,
            TargetType="ip",
            HealthCheckProtocol="HTTP",
            HealthCheckPath=health_path,
            HealthCheckIntervalSeconds=5,
            HealthCheckTimeoutSeconds=2,
            HealthyThresholdCount=2,
            UnhealthyThresholdCount=2,
            Matcher={"HttpCode": "200-399"},
            Tags=[
                {"Key": "dynoform:platform", "Value": self.platform},
                {"Key": "dynoform:app", "Value": app},
                {"Key": SHARD_TAG, "Value": str(shard)},
            ],
        )
        arn = str(created["TargetGroups"][0]["TargetGroupArn"])
        self._placed[app] = shard
        if app in self._pinned:
            self._pinned[app] = arn
        self.elbv2.modify_target_group_attributes(
            TargetGroupArn=arn,
            Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "5"}],
        )
        if self.placed is not None:
            self.placed(app, shard)
        return arn

    def set_health_path(self, app: str, path: str) -> None:
        arn = self.ensure_target_group(app)
        self.elbv2.modify_target_group(TargetGroupArn=arn, HealthCheckPath=path)

    # rules ----------------------------------------------------------------------------------
    def _rules(self, listener_arn: str) -> list[dict[str, Any]]:
        return listener_rules(self.elbv2, listener_arn)

    def _app_rules(self, listener_arn: str, app: str) -> list[dict[str, Any]]:
        """The app's rules on a listener, by priority: those with its own hostname."""
        own = f"{app}.{self.domain}"
        found = [r for r in self._rules(listener_arn) if own in _hosts(r)]
        return sorted(found, key=lambda r: int(r["Priority"]) if r["Priority"].isdigit() else 0)

    def _app_rule(self, listener_arn: str, app: str) -> dict[str, Any] | None:
        rules = self._app_rules(listener_arn, app)
        return rules[0] if rules else None

    def check_room(
        self, app: str, domains: Iterable[str], plain_http: bool, certificates: int
    ) -> None:
        """Raise the quota error if the app's shard has no room for these domains (their
        rules) and `certificates` more certificates: before anything is saved or changed.
        An app not placed yet gets a shard with room when it is."""
        shard = self.shard_of(app)
        if shard is None:
            return
        custom = app_hostnames(app, self.domain, domains)[1:]
        listeners = self.listeners_of(app)
        now = self._app_rules(listeners.rules, app)
        wanted = rules_needed(len(custom), self.limits)
        http_now = len(self._app_rules(listeners.http, app)) if listeners.http else 0
        extra = Need(
            rules=max(0, wanted - len(now)),
            http_rules=max(0, wanted - http_now) if plain_http and listeners.http else 0,
            certificates=certificates,
        )
        quota = full_quota(self.load(shard), extra, self.limits, new_app=False)
        if quota is not None:
            raise quota_error(
                quota,
                f"{app}'s load balancer (shard {shard})",
                self.limits,
                "remove a domain of an app on it, or ask AWS to raise the quota "
                "(Service Quotas, Elastic Load Balancing)",
            )

    def ensure_rule(
        self,
        app: str,
        domains: Iterable[str] = (),
        maintenance: bool = False,
        plain_http: bool | None = None,
    ) -> None:
        """The app's rules on its shard's listeners: host-header = its hostnames (5 at most a
        rule) -> its target group. Room is checked before anything changes; a target group
        made here goes again if its rules cannot be made.

        plain_http: True puts the same rules on the HTTP listener (no redirect to HTTPS),
        False removes them from there, None leaves the HTTP listener as it is."""
        hosts = app_hostnames(app, self.domain, domains)
        new = self.target_group_arn(app) is None
        need = Need(
            rules_needed(len(hosts) - 1, self.limits),
            rules_needed(len(hosts) - 1, self.limits) if plain_http else 0,
            len(hosts) - 1,
        )
        tg_arn = self.ensure_target_group(app, need=need)
        try:
            self._ensure_rules(app, hosts, tg_arn, maintenance, plain_http)
        except BaseException:
            if new:  # nothing half-made: the new app's target group goes again
                self.remove_app(app)
            raise

    def _ensure_rules(
        self, app: str, hosts: list[str], tg_arn: str, maintenance: bool, plain_http: bool | None
    ) -> None:
        actions = maintenance_action() if maintenance else forward_action(tg_arn)
        listeners = self.listeners_of(app)
        targets = [listeners.rules]
        extra = listeners.http
        if extra and extra != listeners.rules:
            if plain_http:
                targets.append(extra)
            elif plain_http is False:
                for stale in self._app_rules(extra, app):
                    self.elbv2.delete_rule(RuleArn=stale["RuleArn"])
            elif self._app_rules(extra, app):
                targets.append(extra)  # keep an opted-out app's rules in step
        plans = [(ln, *self._plan_rules(ln, app, hosts)) for ln in targets]
        added = sum(max(0, len(packed) - len(current)) for _, current, packed in plans)
        if added > 0:
            self._check_rules(listeners, app, added)
        for listener, current, packed in plans:
            self._apply_rules(listener, current, packed, actions)

    def _plan_rules(
        self, listener: str, app: str, hosts: list[str]
    ) -> tuple[list[dict[str, Any]], list[list[str]]]:
        """The app's rules on the listener now, and the host lists they should have."""
        current = self._app_rules(listener, app)
        packed = pack_hosts(hosts[0], hosts[1:], [_hosts(r) for r in current], self.limits)
        return current, packed

    def _check_rules(self, listeners: ShardListeners, app: str, added: int) -> None:
        """The rules quota, before any change: AWS counts the rules of every listener of the
        load balancer together (their default rules not counted)."""
        held = 0
        for listener in dict.fromkeys(ln for ln in (listeners.rules, listeners.http) if ln):
            held += len([r for r in self._rules(listener) if not r.get("IsDefault")])
        if held + added > self.limits.rules:
            raise quota_error(
                "rules",
                f"{app}'s load balancer",
                self.limits,
                "remove a domain of an app on this load balancer, or ask AWS to raise it",
            )

    def _apply_rules(
        self,
        listener: str,
        current: list[dict[str, Any]],
        packed: list[list[str]],
        actions: list[dict[str, Any]],
    ) -> None:
        """Make, change, then delete rules: a name moves into its new rule before it leaves
        an old one."""
        for index, hosts in enumerate(packed):
            conditions = [{"Field": "host-header", "HostHeaderConfig": {"Values": hosts}}]
            if index >= len(current):
                # at a free priority; another writer's race for it is retried
                create_rule(self.elbv2, listener, Conditions=conditions, Actions=actions)
            elif _rule_differs(current[index], hosts, actions):
                self.elbv2.modify_rule(
                    RuleArn=current[index]["RuleArn"], Conditions=conditions, Actions=actions
                )
        for surplus in current[len(packed) :]:
            self.elbv2.delete_rule(RuleArn=surplus["RuleArn"])

    # targets --------------------------------------------------------------------------------
    def targets(self, app: str) -> set[RouterTarget]:
        arn = self.target_group_arn(app)
        if arn is None:
            return set()
        health = self.elbv2.describe_target_health(TargetGroupArn=arn)
        return {
            RouterTarget(d["Target"]["Id"], int(d["Target"]["Port"]))
            for d in health["TargetHealthDescriptions"]
        }

    def health(self, app: str, targets: Iterable[RouterTarget]) -> dict[RouterTarget, str]:
        """ELBv2's view of each target: healthy, initial, unhealthy, draining, unused."""
        arn = self.target_group_arn(app)
        wanted = [{"Id": t.ip, "Port": t.port} for t in targets]
        if arn is None or not wanted:
            return {}
        described = self.elbv2.describe_target_health(TargetGroupArn=arn, Targets=wanted)
        return {
            RouterTarget(d["Target"]["Id"], int(d["Target"]["Port"])): d["TargetHealth"]["State"]
            for d in described["TargetHealthDescriptions"]
        }

    def drain_seconds(self, app: str) -> int:
        arn = self.target_group_arn(app)
        if arn is None:
            return 0
        attributes = self.elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
        for attribute in attributes:
            if attribute["Key"] == "deregistration_delay.timeout_seconds":
                return int(attribute["Value"])
        return 300

    def register(self, app: str, targets: Iterable[RouterTarget]) -> None:
        chosen = set(targets)
        wanted = [{"Id": t.ip, "Port": t.port} for t in chosen]
        if not wanted:
            return
        held = self.targets(app)
        new = chosen - held
        if len(held) + len(new) > self.limits.targets:
            raise quota_error(
                "targets", f"{app}'s target group", self.limits, f"scale {app}'s web dynos down"
            )
        try:
            self.elbv2.register_targets(
                TargetGroupArn=self.ensure_target_group(app), Targets=wanted
            )
        except ClientError as exc:
            # AWS's other targets quota, over every target group of the load balancer: counting
            # those would cost a call per app on every deploy; AWS refuses the whole call.
            if exc.response.get("Error", {}).get("Code") != "TooManyTargets":
                raise
            raise quota_error(
                "lb_targets",
                f"{app}'s load balancer (shard {self.shard_of(app) or 0})",
                self.limits,
                "scale down web dynos of apps on it, or ask AWS to raise the quota "
                "(Service Quotas, Elastic Load Balancing)",
            ) from None

    def deregister(self, app: str, targets: Iterable[RouterTarget]) -> None:
        """Deregister those of targets that are registered (draining ones already are not)."""
        registered = self.targets(app)
        gone = [{"Id": t.ip, "Port": t.port} for t in targets if t in registered]
        arn = self.target_group_arn(app)
        if gone and arn:
            self.elbv2.deregister_targets(TargetGroupArn=arn, Targets=gone)

    def sync_targets(
        self, app: str, wanted: set[RouterTarget]
    ) -> tuple[set[RouterTarget], set[RouterTarget]]:
        """Make the target group hold exactly `wanted`; returns (added, removed)."""
        current = self.targets(app)
        added, removed = wanted - current, current - wanted
        self.register(app, added)
        self.deregister(app, removed)
        return added, removed

    def remove_app(self, app: str) -> None:
        """The app's rules on every shard (an interrupted run may have left some anywhere),
        then its target group."""
        listeners = [ln for s in self.shards for ln in (s.rules, s.http) if ln]
        for listener in dict.fromkeys(listeners):
            for rule in self._app_rules(listener, app):
                self.elbv2.delete_rule(RuleArn=rule["RuleArn"])
        arn = self.target_group_arn(app)
        if arn is not None:
            self.elbv2.delete_target_group(TargetGroupArn=arn)
        self._placed.pop(app, None)
        if app in self._pinned:
            self._pinned[app] = None


def _hosts(rule: dict[str, Any]) -> list[str]:
    """The host-header values of a rule."""
    for condition in rule.get("Conditions", []):
        if condition.get("Field") == "host-header":
            return list(
                condition.get("HostHeaderConfig", {}).get("Values") or condition.get("Values", [])
            )
    return []


def _rule_differs(rule: dict[str, Any], hosts: list[str], actions: list[dict[str, Any]]) -> bool:
    current_actions = rule.get("Actions", [])
    kind = current_actions[0].get("Type") if current_actions else None
    same_target = kind == actions[0]["Type"] and current_actions[0].get(
        "TargetGroupArn"
    ) == actions[0].get("TargetGroupArn")
    return sorted(_hosts(rule)) != sorted(hosts) or not same_target
