"""Dyno units stopped or edited by hand on a live host: found and put back (ops/drift.py).

The checks run through the library against the local cloud's hosts, as the controller runs
them; the hand edits go over the same SSH connections, as an operator's would.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator

import pytest
from e2e_support import EXAMPLES, Url, cli, get

from provisioner.context import Context
from provisioner.ops import controller
from provisioner.ops.drift import check_units, restore_units
from provisioner.plan.drift import UnitDrift
from provisioner.plan.units import DynoState, dyno_facts_argv, parse_dyno_facts
from provisioner.remote.ssh import Connection

pytestmark = pytest.mark.cloud


@pytest.fixture
def ctx(fleet: object) -> Iterator[Context]:
    """A Context, with the fleet's controller paused meanwhile: it would heal the hand edits
    itself before these tests look at them."""
    with Context.open("local") as context:
        was_paused = controller.is_paused(context)
        assert controller.quiesce(context), "the controller did not pause"
        try:
            yield context
        finally:
            controller.set_paused(context, was_paused)


def connections(ctx: Context) -> dict[str, Connection]:
    fleet = ctx.fleet()
    return {host.id: fleet.connect(host) for host in fleet.ready()}


def dynos(conns: dict[str, Connection], app: str) -> dict[str, DynoState]:
    """The app's dynos by name (web.1, worker.1) on every host."""
    states = []
    for host_id, conn in conns.items():
        states += parse_dyno_facts(conn.run(dyno_facts_argv(app)).stdout, host_id)
    return {s.instance.name: s for s in states}


def drift_of(conns: dict[str, Connection], app: str) -> set[tuple[str, str]]:
    found: list[UnitDrift] = []
    for host_id, conn in conns.items():
        found += check_units(conn, host_id)
    return {(d.unit, d.problem) for d in found if d.app == app}


def serving(url: Url) -> set[str]:
    """The dynos that answered 30 requests (a failed request, while a dyno restarts, skipped)."""
    seen = set()
    for _ in range(30):
        try:
            status, body = get(url)
        except (OSError, http.client.HTTPException):
            continue
        if status == 200:
            seen.add(json.loads(body)["dyno"])
    return seen


def wait_for_dynos(url: Url, wanted: set[str], timeout: float = 30.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        seen = serving(url)
        if seen == wanted or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


def test_units_stopped_or_edited_by_hand_are_found_and_restored(
    app_name: str, ctx: Context
) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    cli("ps:scale", "web=2", "worker=1", "-a", app_name)
    url = Url.of_app(app_name)
    conns = connections(ctx)
    running = dynos(conns, app_name)
    edited, stopped, missing = (running[n].instance for n in ("web.1", "web.2", "worker.1"))
    on = {d.name: conns[d.host] for d in (edited, stopped, missing)}
    dropins = f"/etc/systemd/system/{edited.unit}.d"
    assert drift_of(conns, app_name) == set()
    try:
        # By hand: a drop-in that changes an Environment= line; a stop; a stop and a removal.
        on["web.1"].run(["mkdir", "-p", dropins], sudo=True, check=True)
        on["web.1"].put(b"[Service]\nEnvironment=DYNO=by-hand\n", f"{dropins}/50-by-hand.conf")
        on["web.1"].run(["systemctl", "daemon-reload"], sudo=True, check=True)
        on["web.1"].run(["systemctl", "restart", edited.unit], sudo=True, check=True)
        on["web.2"].run(["systemctl", "stop", stopped.unit], sudo=True, check=True)
        on["worker.1"].run(["systemctl", "stop", missing.unit], sudo=True, check=True)
        on["worker.1"].run(["rm", f"/etc/systemd/system/{missing.unit}"], sudo=True, check=True)
        on["worker.1"].run(["systemctl", "daemon-reload"], sudo=True, check=True)
        assert wait_for_dynos(url, {"by-hand"}) == {"by-hand"}

        assert drift_of(conns, app_name) == {
            (edited.unit, "edited"),
            (stopped.unit, "stopped"),
            (missing.unit, "missing"),
        }
        lines = [line for conn in conns.values() for line in restore_units(conn, app_name)]
        assert sorted(lines) == sorted(
            [
                f"{edited.unit} restored (edited)",
                f"{stopped.unit} restored (stopped)",
                f"{missing.unit} restored (missing)",
            ]
        )
        assert wait_for_dynos(url, {"web.1", "web.2"}) == {"web.1", "web.2"}
        assert {n: s.active for n, s in dynos(conns, app_name).items()} == {
            "web.1": "active",
            "web.2": "active",
            "worker.1": "active",
        }
        assert drift_of(conns, app_name) == set()
        assert [line for c in conns.values() for line in restore_units(c, app_name)] == []
    finally:
        on["web.1"].run(["rm", "-rf", dropins], sudo=True)
        on["web.1"].run(["systemctl", "daemon-reload"], sudo=True)


def test_a_deploy_retiring_dynos_after_a_drain_is_never_drift(app_name: str, ctx: Context) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    cli("ps:scale", "web=2", "-a", app_name)
    seen: set[tuple[str, str]] = set()
    checks = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal checks
        with Context.open("local") as own:  # its own SSH connections: not shared across threads
            conns = connections(own)
            while not done.is_set():
                seen.update(drift_of(conns, app_name))
                checks += 1
                done.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        cli("deploy", "-a", app_name, str(EXAMPLES / "python"))  # v2; v1 drains, then stops
        cli("ps:scale", "web=1", "-a", app_name)  # web.2 drains, then stops
        time.sleep(8)  # the local router's drain (5 s) and the stops after it
    finally:
        done.set()
        watcher.join(timeout=60)
    assert checks > 10
    assert seen == set()
    assert drift_of(connections(ctx), app_name) == set()
