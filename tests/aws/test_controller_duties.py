"""The leader's duties (cron, autoscaling, backups) tick in threads of their own, only on the
host that leads, and not while the controller is paused."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from provisioner.aws.session import Aws
from provisioner.context import Context
from provisioner.ops import controller
from provisioner.ops.rollout import Observed
from provisioner.store import CONTROLLER_OPERATION, Lease, Store
from provisioner.targets import Target


class Ticks:
    def __init__(self) -> None:
        self.by_host: dict[str, int] = {}
        self.lock = threading.Lock()

    def duty(self, host: str) -> controller.Duty:
        def tick(ctx: Context, guard: Callable[[], None]) -> None:
            guard()  # a tick changes nothing unless the lease is surely ours
            with self.lock:
                self.by_host[host] = self.by_host.get(host, 0) + 1

        return controller.Duty("count", 0.05, tick)

    def of(self, host: str) -> int:
        with self.lock:
            return self.by_host.get(host, 0)


def wait_until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


@pytest.fixture
def start(aws: Aws, store: Store) -> Iterator[Callable[[str, Ticks], controller.Controller]]:
    running: list[tuple[controller.Controller, threading.Thread]] = []

    def start(host: str, ticks: Ticks) -> controller.Controller:
        ctx = Context(Target("test", region="us-east-1"), aws=aws, store=store)
        ctl = controller.Controller(ctx, host)
        ctl.duties = (ticks.duty(host),)
        thread = threading.Thread(target=ctl.run, daemon=True)
        thread.start()
        running.append((ctl, thread))
        return ctl

    yield start
    for ctl, thread in running:
        ctl.stop.set()
        thread.join(timeout=10)


def test_only_the_leader_ticks_and_a_successor_takes_over(start, store: Store) -> None:  # type: ignore[no-untyped-def]
    ticks = Ticks()
    first = start("i-first", ticks)
    wait_until(lambda: ticks.of("i-first") >= 3)
    start("i-second", ticks)
    time.sleep(0.5)
    assert ticks.of("i-second") == 0  # it waits for the lease
    first.stop.set()  # the leader goes and releases its lease
    wait_until(lambda: ticks.of("i-second") >= 3)
    settled = ticks.of("i-first")
    time.sleep(0.3)
    assert ticks.of("i-first") == settled  # the old leader's duty ended with it


def test_a_paused_controller_ticks_no_more(start, store: Store) -> None:  # type: ignore[no-untyped-def]
    ticks = Ticks()
    ctl = start("i-one", ticks)
    wait_until(lambda: ticks.of("i-one") >= 3)
    controller.set_paused(ctl.ctx, True)
    wait_until(lambda: ctl.paused)  # the next loop reads the setting
    time.sleep(0.2)
    paused_at = ticks.of("i-one")
    time.sleep(0.5)
    assert ticks.of("i-one") == paused_at
    controller.set_paused(ctl.ctx, False)
    wait_until(lambda: ticks.of("i-one") > paused_at)


def test_a_heal_of_an_app_destroyed_since_the_loop_listed_it_does_nothing(aws, store) -> None:  # type: ignore[no-untyped-def]
    """The loop lists the apps, then heals them one by one under each one's lease: an app an
    apps:destroy took meanwhile is skipped once the lease is taken, with no event (an event
    would be a document under apps/<app>/, an app `dynoform apps` lists again)."""
    ctx = Context(Target("test", region="us-east-1"), aws=aws, store=store)
    ctl = controller.Controller(ctx, "i-one")
    lease = Lease(store.docs, controller.SOURCE, CONTROLLER_OPERATION, controller.LEADER_TTL,
                  key=controller.LEADER_KEY)  # fmt: skip
    lease.acquire(patient=False)
    ctl.lease = lease
    try:  # no rollout: nothing of it may be used for an app that is gone
        ctl._keep_app(None, Observed([]), "gone", {}, [], {"i-one"})  # type: ignore[arg-type]
    finally:
        lease.release()
    assert store.apps() == [] and ctl.failed == {}
    assert store.docs.keys("apps/") == [] and store.docs.keys("leases/gone") == []
