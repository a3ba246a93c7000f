"""The dashboard's actions: forms checked before anything runs, and how each one ended."""

from __future__ import annotations

import pytest

from provisioner.context import Context
from provisioner.dashboard.actions import Activities, Activity, describe
from provisioner.errors import DynoformError
from provisioner.store import LeaseBusy
from provisioner.targets import Target


@pytest.mark.parametrize(
    ("action", "form", "what"),
    [
        ("restart", {}, "restart all"),
        ("restart", {"target": "web"}, "restart web"),
        ("scale", {"type": "worker", "quantity": "3"}, "scale worker=3"),
        ("rollback", {"version": "v12"}, "rollback to v12"),
        ("rollback", {"version": "4"}, "rollback to v4"),
        ("maintenance-on", {}, "maintenance on"),
        ("maintenance-off", {"ignored": "x"}, "maintenance off"),
    ],
)
def test_describe_names_what_will_run(action: str, form: dict[str, str], what: str) -> None:
    assert describe(action, form)[0] == what


@pytest.mark.parametrize(
    ("action", "form"),
    [
        ("scale", {"type": "web", "quantity": "-1"}),
        ("scale", {"type": "web", "quantity": "1; rm"}),
        ("scale", {"type": "Web", "quantity": "1"}),
        ("scale", {}),
        ("rollback", {"version": "latest"}),
        ("rollback", {}),
        ("destroy", {}),
    ],
)
def test_bad_forms_are_refused_before_anything_runs(action: str, form: dict[str, str]) -> None:
    with pytest.raises(DynoformError):
        describe(action, form)


def test_activities_say_how_each_change_ended() -> None:
    activities = Activities(Context(Target("nowhere", kind="local")))
    first = Activity("shop", "restart all", 1.0)
    second = Activity("shop", "scale web=2", 2.0)

    def busy(_ctx: Context, _app: str) -> object:
        raise LeaseBusy("shop is busy: deploy by ann since 22:01")

    activities._run(first, lambda _ctx, _app: None)
    activities._run(second, busy)
    assert activities.of("shop") == [
        Activity("shop", "scale web=2", 2.0, "failed", "shop is busy: deploy by ann since 22:01"),
        Activity("shop", "restart all", 1.0, "done"),
    ]
    assert activities.of("blog") == []
