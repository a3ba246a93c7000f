"""The Context: what every operation needs, made once at an edge and passed down.

An edge (the CLI, a test, a daemon such as the controller) makes one for a target; every
operation in provisioner.ops takes it as its first argument. It opens what it needs on first
use (AWS clients, the state store, the platform's record, the fleet's SSH pool) and closes what
it opened when it exits:

    with Context.open("local", say=print) as ctx:
        apps.create(ctx, "hello")
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from functools import cached_property
from types import TracebackType

from botocore.exceptions import ClientError

from provisioner.aws import acmdns
from provisioner.aws.blobs import Blobs
from provisioner.aws.platform import (
    Platform,
    add_shard,
    ensure_platform,
    load_platform,
    require_valid_name,
)
from provisioner.aws.router import RouterTable, ShardListeners
from provisioner.aws.session import Aws
from provisioner.aws.state import Documents, bucket_name
from provisioner.aws.tlscerts import require_validatable
from provisioner.fleet import Fleet, OnFleet
from provisioner.model.tls import Bundle
from provisioner.store import LeaseBusy, Store
from provisioner.targets import Target, get_target

Say = Callable[[str], None]
PLATFORM_DOC = "platform.json"
PLATFORM_LEASE = "_platform"  # a lease name no app can have: one platform build at a time
BUILD = "platform:init"


def quiet(_message: str) -> None:
    """The default `say`: a library caller that wants no progress lines."""


class Context:
    """A target and what operations on it share; a context manager that closes what it opened."""

    def __init__(
        self,
        target: Target,
        say: Say = quiet,
        aws: Aws | None = None,
        store: Store | None = None,
        on_fleet: OnFleet | None = None,
    ) -> None:
        self.target = target
        self.say = say
        self.on_fleet = on_fleet  # made on a fleet host (the controller), not a laptop
        self._aws = aws
        self._store = store  # tests hand in their own clients and store
        self._made_bucket = False  # the store made the state bucket (platform:init says so)
        self._platform: Platform | None = None
        self._fleet: Fleet | None = None
        self._lock = threading.RLock()  # operations fan out over threads that share one Context

    @classmethod
    def open(cls, target: Target | str = "local", say: Say = quiet) -> Context:
        """A Context for a target by name (see `dynoform targets`) or a Target itself."""
        return cls(get_target(target) if isinstance(target, str) else target, say)

    def __enter__(self) -> Context:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the SSH connections the fleet opened; the Context can be used again after."""
        with self._lock:
            fleet, self._fleet = self._fleet, None
        if fleet is not None:
            fleet.close()

    # what operations use -------------------------------------------------------------------
    @cached_property
    def aws(self) -> Aws:
        return self._aws or Aws(self.target)

    @cached_property
    def store(self) -> Store:
        """The state store, its bucket made on first use."""
        if self._store is not None:
            return self._store
        docs = Documents(self.aws.s3, bucket_name(self.target.platform, self.aws.account_id()))
        self._made_bucket = docs.ensure_bucket(self.target.region)
        return Store(docs)

    def platform(self, create: bool = True) -> Platform:
        """The platform's resources; with create=False, NoPlatform when there is none.

        Checking every resource by tag costs a dozen API calls: the record the last check left in
        the state store is used while its listeners still exist.
        """
        with self._lock:
            if self._platform is None:
                self._platform = self._recorded_platform() or self._check_platform(create)
            return self._platform

    def _recorded_platform(self) -> Platform | None:
        doc = self.store.docs.get(PLATFORM_DOC)
        if doc is None:
            return None
        # A record written by a newer dynoform may have fields this one does not know (a
        # controller not yet upgraded reads it too): those are left out.
        known = {k: v for k, v in doc.data.items() if k in Platform.__dataclass_fields__}
        platform = Platform(**known)
        if not platform.https_listener_arn:
            return None  # a record from before HTTPS: check the platform again
        try:
            self.aws.elbv2.describe_listeners(
                ListenerArns=[platform.listener_arn, platform.https_listener_arn]
            )
        except ClientError:
            return None
        return platform

    def _check_platform(self, create: bool) -> Platform:
        if create:
            require_valid_name(self.aws, self.target)  # before anything is made
            require_validatable(self.aws, self.target)  # before anything billed is made
            platform = self.build_platform()
        else:
            platform = load_platform(self.aws, self.target)
        self.remember_platform(platform)
        return platform

    def build_platform(self, ssh_cidr: str | None = None, bundle: Bundle | None = None) -> Platform:
        """Make or complete the platform, one build at a time: two at once would each find no
        VPC (or gateway, route table, group) and each make one."""
        with ExitStack() as held:
            try:
                held.enter_context(self.store.lease(PLATFORM_LEASE, BUILD, patient=False))
            except LeaseBusy:
                self.say("waiting for another platform:init to finish (one build at a time)")
                held.enter_context(self.store.lease(PLATFORM_LEASE, BUILD, wait=True, timeout=1800))
            platform = ensure_platform(
                self.aws, self.target, ssh_cidr=ssh_cidr, say=self.say, bundle=bundle
            )
        if self._made_bucket:  # made for the lease, before the build looked for it
            platform.created.insert(0, f"bucket {self.store.docs.bucket}")
            self._made_bucket = False
        return platform

    def remember_platform(self, platform: Platform) -> None:
        """Record the platform just checked or made: this Context and later ones use it."""
        self.store.docs.put(PLATFORM_DOC, platform.as_dict())
        with self._lock:
            self._platform = platform

    def refresh_platform(self) -> None:
        """Read the platform's record again on next use (a long-lived Context: the controller);
        the fleet, made with the old record, is made anew too."""
        with self._lock:
            self._platform = None
            fleet, self._fleet = self._fleet, None
        if fleet is not None:
            fleet.close()

    def forget_platform(self) -> None:
        """After platform:init or platform:destroy changed it: read it afresh next time."""
        with self._lock:
            self._platform = None
        self.store.docs.delete(PLATFORM_DOC)

    def fleet(self) -> Fleet:
        """The platform's hosts and the one SSH pool every operation of this Context shares."""
        platform = self.platform()
        with self._lock:
            if self._fleet is None:
                self._fleet = Fleet(
                    self.aws, self.target, platform, self.store.docs, on_fleet=self.on_fleet
                )
            return self._fleet

    def router(self) -> RouterTable:
        """The router table over every load balancer (shard) of the platform."""
        platform = self.platform()
        return RouterTable(
            self.aws.elbv2,
            platform.name,
            platform.vpc_id,
            platform.listener_arns,
            self.target.app_domain,
            http_listener_arn=platform.listener_arn if platform.https_listener_arn else None,
            shards=[s.router for s in platform.all_shards],
            # the controller's policy makes no load balancer: a shard is made by the CLI
            grow=self._grow if self.on_fleet is None else None,
            reload=self._shards_found,
            placed=self._placed,
        )

    def _placed(self, app: str, shard: int) -> None:
        """On AWS, the platform's wildcard record points at shard 0: an app on another shard
        needs its own record for <app>.<domain> (put in Route 53 when this account has the
        zone, else the user is told)."""
        if shard == 0 or self.target.is_local:
            return
        host = f"{app}.{self.target.app_domain}"
        dns = self.platform().all_shards[shard].lb_dns
        zone = acmdns.hosted_zone(self.aws, host)
        if zone:
            acmdns.put_records(self.aws, zone, [{"Name": host, "Type": "CNAME", "Value": dns}])
            self.say(f"{host}: a CNAME to load balancer shard {shard} put in Route 53 zone {zone}")
        else:
            self.say(f"{app} is on load balancer shard {shard}: point {host} at {dns} (a CNAME)")

    def _shards_found(self) -> list[ShardListeners]:
        """Every shard, found afresh by name (another process made one this one's record
        lacks)."""
        with self._lock:
            self._platform = None
            platform = self._check_platform(create=False)
        return [s.router for s in platform.all_shards]

    def _grow(self) -> ShardListeners:
        """A new load balancer for the platform (every one is full), recorded at once."""
        with self._lock:
            grown = add_shard(self.aws, self.target, self.platform(), self.say)
            self.remember_platform(grown)
        return grown.all_shards[-1].router

    def blobs(self) -> Blobs:
        """Sources, slugs, build caches and logs: the platform's bucket."""
        return Blobs(self.aws.s3, self.store.docs.bucket)
