"""How the platform's resources are named and found: by tags, never by remembered ids.

Every resource carries `dynoform:platform=<name>` and `dynoform:resource=<kind>` and is found by
those tags before anything is created, so building the platform may run any number of times and
creates each resource once. `Finder` is what each part of the build (network, listeners,
certificate) shares: the clients, whether it may create, and the list of what it created.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from provisioner.aws.session import Aws
from provisioner.errors import NoPlatform
from provisioner.model.names import PLATFORM_NAME_MAX
from provisioner.targets import Target

PLATFORM_TAG = "dynoform:platform"
RESOURCE_TAG = "dynoform:resource"
ROLE_TAG = "dynoform:role"

Say = Callable[[str], None]


def tags(platform: str, resource: str, **extra: str) -> list[dict[str, str]]:
    pairs = {
        PLATFORM_TAG: platform,
        RESOURCE_TAG: resource,
        "Name": f"dynoform-{platform}-{resource}",
    }
    pairs.update(extra)
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def tag_spec(kind: str, platform: str, resource: str) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": tags(platform, resource)}]


def tag_filters(platform: str, resource: str | None = None) -> list[dict[str, Any]]:
    filters = [{"Name": f"tag:{PLATFORM_TAG}", "Values": [platform]}]
    if resource:
        filters.append({"Name": f"tag:{RESOURCE_TAG}", "Values": [resource]})
    return filters


def tagged(aws: Aws, service: str, **wanted: str) -> dict[str, dict[str, str]]:
    """ARN -> tags of the service's resources carrying every `wanted` tag, in one paginated
    Resource Groups Tagging API listing (not one tag call per resource of the region). The
    index lags a new resource by a moment: callers keep what they make themselves."""
    filters = [{"Key": k, "Values": [v]} for k, v in wanted.items()]
    pages = aws.client("resourcegroupstaggingapi").get_paginator("get_resources")
    found: dict[str, dict[str, str]] = {}
    for page in pages.paginate(TagFilters=filters, ResourceTypeFilters=[service]):
        for item in page.get("ResourceTagMappingList", []):
            labels = {t["Key"]: t.get("Value", "") for t in item.get("Tags", [])}
            found[str(item["ResourceARN"])] = labels
    return found


def lb_name(platform: str) -> str:
    return f"dynoform-{platform}"[:32].rstrip("-")


def shard_name(platform: str, shard: int | str) -> str:
    """The load balancer of a shard: shard 0 is the platform's first one, `dynoform-<platform>`;
    the others `dynoform-<platform>--<n>`, or `df-<platform>--<n>` when that would not fit
    ELBv2's 32 characters (platform names of 18 to 21): a cut name would be another platform's
    too. Names longer than 21 (from before they were checked) keep the cut form. `*` for IAM."""
    if shard == 0:
        return lb_name(platform)
    first = lb_name(platform)
    if len(first) <= 26:
        return f"{first}--{shard}"
    if len(platform) <= PLATFORM_NAME_MAX:
        return f"df-{platform}--{shard}"
    return f"{first[:26].rstrip('-')}--{shard}"


def key_name(platform: str) -> str:
    return f"dynoform-{platform}"


def say_on_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Finder:
    """Finds a platform's resources by their tags; with `create`, the parts of the build make
    what is missing and note it in `created`, else a missing resource is `NoPlatform`."""

    def __init__(self, aws: Aws, target: Target, create: bool, say: Say = say_on_stderr) -> None:
        self.aws = aws
        self.target = target
        self.name = target.platform
        self.create = create
        self.say = say
        self.created: list[str] = []

    def missing(self, what: str) -> None:
        if not self.create:
            raise NoPlatform(
                f"platform {self.name!r} on target {self.target.name!r} has no {what}",
                "create it with `dynoform platform:init`",
            )

    def find(self, describe: str, key: str, resource: str, **kwargs: Any) -> list[dict[str, Any]]:
        """EC2's `describe` call, filtered to this platform's `resource`."""
        method = getattr(self.aws.ec2, describe)
        found = method(Filters=tag_filters(self.name, resource), **kwargs)[key]
        return list(found)
