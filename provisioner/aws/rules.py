"""Listener rules on ELBv2: every page of them, and a new rule at a free priority.

Two writers (two deploys of different apps, the controller and the CLI) may pick the same
free priority at once; ELBv2 refuses the second with PriorityInUse, which is retried at the
next free one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

PRIORITY_ATTEMPTS = 10
FIRST_PRIORITY = 100


def listener_rules(elbv2: Any, listener_arn: str) -> list[dict[str, Any]]:
    """Every rule of the listener (DescribeRules answers in pages, and has no paginator)."""
    rules: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"ListenerArn": listener_arn}
    while True:
        page = elbv2.describe_rules(**kwargs)
        rules.extend(page.get("Rules", []))
        if not page.get("NextMarker"):
            return rules
        kwargs["Marker"] = page["NextMarker"]


def next_free(used: Iterable[int], start: int = FIRST_PRIORITY) -> int:
    taken = set(used)
    priority = start
    while priority in taken:
        priority += 1
    return priority


def used_priorities(rules: Iterable[dict[str, Any]]) -> set[int]:
    return {int(r["Priority"]) for r in rules if str(r.get("Priority", "")).isdigit()}


def create_rule(elbv2: Any, listener_arn: str, **rule: Any) -> str:
    """A rule at the listener's first free priority; PriorityInUse (another writer took it a
    moment ago) moves on to the next free one. Returns the rule's ARN."""
    taken = used_priorities(listener_rules(elbv2, listener_arn))
    for _ in range(PRIORITY_ATTEMPTS):
        priority = next_free(taken)
        try:
            created = elbv2.create_rule(ListenerArn=listener_arn, Priority=priority, **rule)
            return str(created["Rules"][0]["RuleArn"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "PriorityInUse":
                raise
            taken.add(priority)
    raise ClientError(
        {"Error": {"Code": "PriorityInUse", "Message": "no free priority after retries"}},
        "CreateRule",
    )
