"""The one place that makes boto3 clients, for AWS targets and the local cloud alike.

Only the endpoint differs: the local target points every client at the local cloud's moto
server with fixed throwaway credentials; AWS targets use the profile and boto3's usual chain.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

from provisioner.aws import models
from provisioner.errors import DynoformError
from provisioner.targets import Target

LOCAL_CREDENTIALS = {"aws_access_key_id": "dynoform", "aws_secret_access_key": "dynoform-local"}
# The account moto maps those credentials to (the local cloud's daemon.ACCOUNT): known, so a
# local command asks STS nothing (the call and its client were ~0.04 s of every command).
LOCAL_ACCOUNT = "123456789012"
_BOTO_CONFIG = Config(
    retries={"max_attempts": 5, "mode": "standard"},
    connect_timeout=5,
    read_timeout=60,
    max_pool_connections=32,
)


class Aws:
    """Lazily made boto3 clients for one target; thread-safe to share."""

    def __init__(self, target: Target, endpoint_url: str | None = None) -> None:
        self.target = target
        self._endpoint = endpoint_url
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    @cached_property
    def endpoint_url(self) -> str | None:
        if self._endpoint:
            return self._endpoint
        if self.target.endpoint_url:
            return self.target.endpoint_url
        if self.target.local is not None:
            return os.environ.get("DYNOFORM_LOCAL_ENDPOINT") or self.target.local.endpoint()
        return None

    @cached_property
    def session(self) -> boto3.Session:
        core = botocore.session.Session()
        core.register_component("data_loader", models.loader())  # models parsed once
        if self.target.is_local:
            return boto3.Session(
                region_name=self.target.region,
                aws_access_key_id=LOCAL_CREDENTIALS["aws_access_key_id"],
                aws_secret_access_key=LOCAL_CREDENTIALS["aws_secret_access_key"],
                botocore_session=core,
            )
        return boto3.Session(
            profile_name=self.target.profile, region_name=self.target.region, botocore_session=core
        )

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self.session.client(  # type: ignore[call-overload]
                    service, endpoint_url=self.endpoint_url, config=_BOTO_CONFIG
                )
            return self._clients[service]

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def elbv2(self) -> Any:
        return self.client("elbv2")

    @property
    def ssm(self) -> Any:
        return self.client("ssm")

    @property
    def sts(self) -> Any:
        return self.client("sts")

    @property
    def acm(self) -> Any:
        return self.client("acm")

    def account_id(self) -> str:
        if self.target.is_local and not self._endpoint and not self.target.endpoint_url:
            return LOCAL_ACCOUNT
        return str(self.sts.get_caller_identity()["Account"])


# EC2 is eventually consistent: a new instance or security group may be unknown to the next
# call for a moment (AWS: "Eventual consistency in the Amazon EC2 API").
NOT_YET_VISIBLE = ("InvalidInstanceID.NotFound", "InvalidGroup.NotFound")
VISIBLE_WITHIN = 60.0  # seconds: AWS documents a few seconds, rarely a minute


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def eventually(
    call: Callable[..., Any],
    *args: Any,
    codes: tuple[str, ...] = NOT_YET_VISIBLE,
    within: float = VISIBLE_WITHIN,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> Any:
    """call(*args, **kwargs), retried with backoff while AWS answers one of `codes` (a resource
    just made is not yet visible to this call) for up to `within` seconds; returns its result."""
    delay, waited = 0.25, 0.0
    while True:
        try:
            return call(*args, **kwargs)
        except ClientError as exc:
            if error_code(exc) not in codes or waited + delay > within:
                raise
        sleep(delay)
        waited += delay
        delay = min(delay * 2, 5.0)


def retry_in_use(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """A delete AWS refuses while dependencies linger (LB interfaces, terminating instances):
    retried for a few minutes; already gone counts as done."""
    delay = 2.0
    for _ in range(40):
        try:
            call(*args, **kwargs)
            return
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code.endswith("NotFound") or code.endswith(".NotFound"):
                return
            busy = ("DependencyViolation", "ResourceInUse", "ResourceInUseException")
            if code not in (*busy, "InvalidIPAddress.InUse"):
                raise
            time.sleep(delay)
            delay = min(delay * 1.5, 15)
    raise DynoformError(
        f"{what} is still in use after several minutes", "run platform:destroy again"
    )
