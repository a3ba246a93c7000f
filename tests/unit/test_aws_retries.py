"""The handling of what real AWS does and moto does not: retries, pages, names (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from provisioner.aws import instances, rules
from provisioner.aws.acmdns import zone_for
from provisioner.aws.managed import owned_by, resource_id
from provisioner.aws.session import eventually
from provisioner.aws.state import _is_conflict, _is_precondition
from provisioner.errors import ValidationError
from provisioner.model.names import validate_platform_name


def _error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Op",
    )


class Flaky:
    """A call that fails with `code` the first `times` calls, then answers "ok"."""

    def __init__(self, code: str, times: int) -> None:
        self.code, self.times, self.calls = code, times, 0

    def __call__(self, **kwargs: Any) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise _error(self.code)
        return "ok"


def test_eventually_retries_not_yet_visible_ids_with_backoff():
    slept: list[float] = []
    call = Flaky("InvalidInstanceID.NotFound", 3)
    assert eventually(call, InstanceIds=["i-1"], sleep=slept.append) == "ok"
    assert call.calls == 4 and slept == [0.25, 0.5, 1.0]
    group = Flaky("InvalidGroup.NotFound", 1)
    assert eventually(group, sleep=slept.append) == "ok"


def test_eventually_raises_other_errors_at_once_and_gives_up_in_time():
    other = Flaky("UnauthorizedOperation", 1)
    with pytest.raises(ClientError, match="UnauthorizedOperation"):
        eventually(other, sleep=lambda s: None)
    assert other.calls == 1
    slept: list[float] = []
    never = Flaky("InvalidInstanceID.NotFound", 1000)
    with pytest.raises(ClientError, match="InvalidInstanceID.NotFound"):
        eventually(never, within=10, sleep=slept.append)
    assert slept == [0.25, 0.5, 1.0, 2.0, 4.0]  # the next 5 s would pass the 10 s allowed


class Ec2Refusing:
    def __init__(self) -> None:
        self.calls = 0

    def terminate_instances(self, **kwargs: Any) -> None:
        self.calls += 1
        raise _error("InternalError", 500)


class AwsOf:
    def __init__(self, ec2: Any) -> None:
        self.ec2 = ec2


def test_a_terminate_that_keeps_failing_is_retried_then_named_loudly():
    ec2 = Ec2Refusing()
    slept: list[float] = []
    with pytest.raises(instances.LeftRunning) as caught:
        instances.terminate(AwsOf(ec2), ["i-0abc"], sleep=slept.append)  # type: ignore[arg-type]
    assert ec2.calls == instances.TERMINATE_ATTEMPTS
    assert slept == [1.0, 2.0, 4.0]
    assert (
        caught.value.message
        == "could not terminate i-0abc (InternalError): it may still run and bill"
    )
    assert "hosts:remove" in (caught.value.hint or "")


class StaleListener:
    """ELBv2 whose rule listing is a moment old: priorities 100 and 101 were taken since."""

    def __init__(self) -> None:
        self.tried: list[int] = []

    def describe_rules(self, **kwargs: Any) -> dict[str, Any]:
        return {"Rules": [{"Priority": "default"}, {"Priority": "99"}]}

    def create_rule(self, Priority: int, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        self.tried.append(Priority)
        if Priority in (100, 101):
            raise _error("PriorityInUse")
        return {"Rules": [{"RuleArn": f"arn:rule/{Priority}"}]}


def test_a_priority_taken_meanwhile_moves_to_the_next_free_one():
    elbv2 = StaleListener()
    assert rules.create_rule(elbv2, "arn:listener", Conditions=[], Actions=[]) == "arn:rule/102"
    assert elbv2.tried == [100, 101, 102]
    assert rules.next_free([100, 101, 103]) == 102


class PagedRules:
    def describe_rules(self, **kwargs: Any) -> dict[str, Any]:
        pages = {None: (["a", "b"], "m1"), "m1": (["c", "d"], "m2"), "m2": (["e"], None)}
        names, marker = pages[kwargs.get("Marker")]
        return {"Rules": [{"RuleArn": n} for n in names], "NextMarker": marker}


def test_every_page_of_rules_is_read():
    assert [r["RuleArn"] for r in rules.listener_rules(PagedRules(), "arn")] == list("abcde")


def test_s3_conflict_is_retried_and_a_lost_condition_is_stale():
    assert _is_conflict(_error("ConditionalRequestConflict", 409))
    assert not _is_conflict(_error("PreconditionFailed", 412))
    assert _is_precondition(_error("PreconditionFailed", 412))
    assert not _is_precondition(_error("ConditionalRequestConflict", 409))


def test_validation_zones_are_the_domain_or_its_nearest_parent():
    zones = {"example.org": "Z1", "apps.example.org": "Z2"}
    assert zone_for(zones, "www.apps.example.org") == "Z2"
    assert zone_for(zones, "shop.example.org.") == "Z1"
    assert zone_for(zones, "example.net") is None


def test_platform_names_keep_addon_identifiers_unique():
    longest = "p" + "-x" * 10  # 21 characters
    assert validate_platform_name(longest) == longest
    ids = {resource_id(longest, a) for a in ("postgres-aaaaaa", "postgres-aaaaab")}
    assert len(ids) == 2 and all(len(i) <= 40 for i in ids)
    for bad in ("p" * 22, "Prod", "1prod", "prod-", "pr--od", "pr_od", ""):
        with pytest.raises(ValidationError, match="platform name"):
            validate_platform_name(bad)


def test_an_existing_database_is_ours_only_by_its_tags():
    tags = [{"Key": "dynoform:platform", "Value": "prod"}, {"Key": "dynoform:addon", "Value": "a"}]
    assert owned_by(tags, "prod", "a")
    assert not owned_by(tags, "prod", "b") and not owned_by(tags, "stage", "a")
    assert not owned_by([], "prod", "a")


def test_the_local_account_is_known_without_sts() -> None:
    """A local command asks STS nothing: its account is the one moto maps the local cloud's
    fixed credentials to; a local target pointed elsewhere, and AWS targets, still ask."""
    from provisioner.aws.session import LOCAL_ACCOUNT, Aws
    from provisioner.localcloud.daemon import ACCOUNT
    from provisioner.targets import LOCAL_TARGET, Target

    assert LOCAL_ACCOUNT == ACCOUNT

    class NoSts(Aws):
        @property
        def sts(self) -> Any:
            raise AssertionError("STS asked")

    assert NoSts(LOCAL_TARGET).account_id() == ACCOUNT
    with pytest.raises(AssertionError, match="STS asked"):
        NoSts(LOCAL_TARGET, endpoint_url="http://127.0.0.1:1").account_id()
    with pytest.raises(AssertionError, match="STS asked"):
        NoSts(Target("aws1")).account_id()
