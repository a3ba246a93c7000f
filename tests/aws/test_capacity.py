"""Capacity is held by dynos that run: one app's unplaceable wishes block no other app."""

from provisioner.aws.instances import Host
from provisioner.model.formation import ProcessFormation
from provisioner.ops.rollout import Observed, Rollout
from provisioner.plan.placement import DynoRef
from provisioner.plan.units import DynoInstance, DynoState


def running(app: str, name: str, host: str) -> DynoState:
    return DynoState(DynoInstance(app, 2, name, host, 20000), "active", "running", 1, 0, 0, None)


def test_a_failed_first_deploy_holds_no_capacity(store):
    """Near capacity, a new app's first deploy failed but its web=4 stayed recorded: the
    running app must still scale (down or up within what is free)."""
    host = Host("i-1", "198.18.1.10", None, "z1", "t3.small", "running", None, "runner", "")
    for app in ("shop", "greedy"):
        store.create_app(app)
    store.save_formation("greedy", {"web": ProcessFormation(4)}, None)
    store.save_formation("shop", {"web": ProcessFormation(2)}, None)
    observed = Observed([host], {"i-1": [running("shop", "web.1", "i-1"),
                                          running("shop", "web.2", "i-1")]})  # fmt: skip
    rollout = Rollout(None, store, None, None, print)  # type: ignore[arg-type]
    assert rollout.placement(observed, "shop", {"web": ProcessFormation(1)}) == {
        DynoRef("shop", "web", 1): "i-1"
    }
    up = rollout.placement(observed, "shop", {"web": ProcessFormation(3)})
    assert sorted(d.name for d in up) == ["web.1", "web.2", "web.3"]
