"""The router table on ELBv2: per app a target group, a host-header rule, and web dyno targets.

On AWS an Application Load Balancer serves it; on the local cloud the same API calls reach moto
and the local cloud's HAProxy follows them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from provisioner.aws import rules
from provisioner.errors import DynoformError

MAX_HOSTS_PER_RULE = 5  # ALB: at most 5 condition values per rule
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
    """The rule's hostnames: <app>.<domain>, then the custom ones. Custom names equal to or
    under the platform domain never reach the rule (a record from before domains:add refused
    them could hold one): they belong to other apps."""
    platform_names = [c for c in custom if c == domain or c.endswith(f".{domain}")]
    names = [f"{app}.{domain}", *sorted(set(custom) - set(platform_names))]
    if len(names) > MAX_HOSTS_PER_RULE:
        raise DynoformError(
            f"{app} has {len(names)} hostnames; at most {MAX_HOSTS_PER_RULE} are supported",
            "remove a domain with `dynoform domains:remove`",
        )
    return names


def free_priority(used: Iterable[int], start: int = 100) -> int:
    taken = set(used)
    priority = start
    while priority in taken:
        priority += 1
    return priority


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


class RouterTable:
    """ELBv2 calls for one platform's load balancer listeners.

    Every app has a rule on each of `listener_arns` (HTTPS). The HTTP listener
    (`http_listener_arn`) redirects every request to HTTPS by its default action, so an app
    has a rule there only when it opts out of the redirect (`plain_http`): then plain HTTP
    reaches its dynos too.
    """

    def __init__(
        self,
        elbv2: Any,
        platform: str,
        vpc_id: str,
        listener_arns: list[str],
        domain: str,
        http_listener_arn: str | None = None,
    ) -> None:
        self.elbv2 = elbv2
        self.platform = platform
        self.vpc_id = vpc_id
        self.listener_arns = listener_arns
        self.domain = domain
        self.http_listener_arn = http_listener_arn

    # target groups --------------------------------------------------------------------------
    def target_group_arn(self, app: str) -> str | None:
        try:
            groups = self.elbv2.describe_target_groups(
                Names=[target_group_name(self.platform, app)]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TargetGroupNotFound":
                return None
            raise
        return str(groups["TargetGroups"][0]["TargetGroupArn"])

    def ensure_target_group(self, app: str, health_path: str = "/") -> str:
        arn = self.target_group_arn(app)
        if arn is not None:
            return arn
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
            ],
        )
        arn = str(created["TargetGroups"][0]["TargetGroupArn"])
        self.elbv2.modify_target_group_attributes(
            TargetGroupArn=arn,
            Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "5"}],
        )
        return arn

    def set_health_path(self, app: str, path: str) -> None:
        arn = self.ensure_target_group(app)
        self.elbv2.modify_target_group(TargetGroupArn=arn, HealthCheckPath=path)

    # rules ----------------------------------------------------------------------------------
    def _rules(self, listener_arn: str) -> list[dict[str, Any]]:
        return rules.listener_rules(self.elbv2, listener_arn)

    def _app_rule(self, listener_arn: str, app: str) -> dict[str, Any] | None:
        own = f"{app}.{self.domain}"
        for rule in self._rules(listener_arn):
            for condition in rule.get("Conditions", []):
                values = condition.get("HostHeaderConfig", {}).get("Values") or condition.get(
                    "Values", []
                )
                if condition.get("Field") == "host-header" and own in values:
                    return rule
        return None

    def ensure_rule(
        self,
        app: str,
        domains: Iterable[str] = (),
        maintenance: bool = False,
        plain_http: bool | None = None,
    ) -> None:
        """One rule per listener: host-header = the app's hostnames -> its target group.

        plain_http: True puts the same rule on the HTTP listener (no redirect to HTTPS),
        False removes it from there, None leaves the HTTP listener as it is."""
        tg_arn = self.ensure_target_group(app)
        hosts = app_hostnames(app, self.domain, domains)
        actions = maintenance_action() if maintenance else forward_action(tg_arn)
        conditions = [{"Field": "host-header", "HostHeaderConfig": {"Values": hosts}}]
        listeners = list(self.listener_arns)
        extra = self.http_listener_arn
        if extra and extra not in listeners:
            if plain_http:
                listeners.append(extra)
            elif plain_http is False:
                stale = self._app_rule(extra, app)
                if stale is not None:
                    self.elbv2.delete_rule(RuleArn=stale["RuleArn"])
            elif self._app_rule(extra, app) is not None:
                listeners.append(extra)  # keep an opted-out app's rule in step
        for listener in listeners:
            rule = self._app_rule(listener, app)
            if rule is None:
                rules.create_rule(self.elbv2, listener, Conditions=conditions, Actions=actions)
            elif _rule_differs(rule, hosts, actions):
                self.elbv2.modify_rule(
                    RuleArn=rule["RuleArn"], Conditions=conditions, Actions=actions
                )

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
        wanted = [{"Id": t.ip, "Port": t.port} for t in targets]
        if wanted:
            self.elbv2.register_targets(
                TargetGroupArn=self.ensure_target_group(app), Targets=wanted
            )

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
        extra = [self.http_listener_arn] if self.http_listener_arn else []
        for listener in dict.fromkeys([*self.listener_arns, *extra]):
            rule = self._app_rule(listener, app)
            if rule is not None:
                self.elbv2.delete_rule(RuleArn=rule["RuleArn"])
        arn = self.target_group_arn(app)
        if arn is not None:
            self.elbv2.delete_target_group(TargetGroupArn=arn)


def _rule_differs(rule: dict[str, Any], hosts: list[str], actions: list[dict[str, Any]]) -> bool:
    current_hosts: list[str] = []
    for condition in rule.get("Conditions", []):
        if condition.get("Field") == "host-header":
            current_hosts = list(
                condition.get("HostHeaderConfig", {}).get("Values") or condition.get("Values", [])
            )
    current_actions = rule.get("Actions", [])
    kind = current_actions[0].get("Type") if current_actions else None
    same_target = kind == actions[0]["Type"] and current_actions[0].get(
        "TargetGroupArn"
    ) == actions[0].get("TargetGroupArn")
    return sorted(current_hosts) != sorted(hosts) or not same_target
