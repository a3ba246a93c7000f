"""apps:destroy while the controller works (the controlled platform): a dyno stopped by hand
right before the destroy (the controller heals it under the app's lease) and a scale racing the
destroy. Afterwards no host keeps anything of the app: no directory, no user, no unit, no
reference copy; the racing command was refused as busy or found the app gone.

Before destroy held the app's lease, the controller's heal (or the scale) ran beside it: seeing
the dynos destroy had stopped while the app's records were still there, it started them again,
re-created the app's user and unpacked a slug being deleted, leaving
/srv/dynoform/apps/<app>/{env,releases/vN.tmp.PID} and the user on the hosts.
"""

from __future__ import annotations

import shlex
import threading
import time
from typing import Any

import pytest
from e2e_support import EXAMPLES, Controlled, wait_for

pytestmark = pytest.mark.cloud

# Long enough for a few controller loops (one every 2 s): a heal that raced the destroy has
# finished, and its leftovers are there to see.
SETTLE_S = 12.0


def deployed(world: Controlled, prefix: str) -> str:
    name = f"{prefix}-{int(time.time() * 1000) % 10**6:06d}"
    world.cli("apps:create", name, "--no-remote")
    world.cli("deploy", "-a", name, str(EXAMPLES / "python"), timeout=900)
    return name


def web(world: Controlled, app: str) -> list[dict[str, Any]]:
    return [d for d in world.json("ps", "-a", app) if d["type"] == "web"]


def leftovers(world: Controlled, app: str) -> dict[str, list[str]]:
    """host -> what it still has of the app (an empty dict: nothing anywhere)."""
    units = f"dyno-{app}.*"
    script = (
        f"test -e /srv/dynoform/apps/{app} && find /srv/dynoform/apps/{app} -maxdepth 2; "
        f"getent passwd dyno-{app}; "
        f"ls -ld /etc/systemd/system/{units} /etc/systemd/system/*.wants/{units} "
        f"/srv/dynoform/units/{units} 2>/dev/null; "
        f"systemctl list-units --all --plain --no-legend {shlex.quote(units)}; true"
    )
    found = {}
    for host in world.runners():
        out = world.cli("hosts:exec", host["id"], "--", "sudo", "sh", "-c", script).stdout
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        if lines:
            found[host["id"]] = lines
    return found


def assert_gone_everywhere(world: Controlled, app: str) -> None:
    time.sleep(SETTLE_S)
    assert app not in [a["name"] for a in world.json("apps")]
    left = leftovers(world, app)
    if left:  # what the hosts and the controller did, for the failure's story
        print(world.cli("controller:status", "-n", "40", check=False).stdout)
        for host in left:
            journal = f"journalctl --no-pager -o short-precise --since=-3min | grep -F {app}"
            print(
                world.cli("hosts:exec", host, "--", "sudo", "sh", "-c", journal + "; true").stdout
            )
    assert left == {}


def test_destroy_while_the_controller_heals_leaves_nothing_on_the_hosts(
    controlled: Controlled,
) -> None:
    world = controlled
    app = deployed(world, "dh")
    try:
        wait_for("web.1 up", lambda: [d["state"] for d in web(world, app)] == ["up"], 60)
        dyno = web(world, app)[0]
        unit = f"dyno-{app}.{dyno['release']}.{dyno['name']}.service"
        world.cli("hosts:exec", dyno["host"], "--", "sudo", "systemctl", "stop", unit)
        # At once: the controller's next loop heals the stopped dyno under the app's lease.
        done = world.cli("apps:destroy", "-a", app, "--confirm", app, check=False, timeout=300)
        assert done.returncode == 0, done.stderr
    finally:
        world.cli("apps:destroy", "-a", app, "--confirm", app, check=False)
    assert_gone_everywhere(world, app)


def test_a_scale_racing_a_destroy_is_refused_or_finds_the_app_gone(
    controlled: Controlled,
) -> None:
    world = controlled
    app = deployed(world, "ds")
    try:
        scale, destroy = cli_at_once(
            world,
            [["ps:scale", "web=2", "-a", app], ["apps:destroy", "-a", app, "--confirm", app]],
        )
        print("scale:", scale.returncode, scale.stderr.strip()[-300:])
        print("destroy:", destroy.returncode, destroy.stderr.strip()[-300:])
        if destroy.returncode == 0:  # the scale came second: refused, or found no app
            assert scale.returncode == 0 or (
                f"app '{app}' is busy: destroy by" in scale.stderr
                or f"no app named '{app}'" in scale.stderr
            ), scale.stderr
        else:  # the destroy came second: refused as busy, the scale went through
            assert f"app '{app}' is busy: scaled by" in destroy.stderr, destroy.stderr
            assert scale.returncode == 0, scale.stderr
        assert "Traceback" not in scale.stderr + destroy.stderr
    finally:
        world.cli("apps:destroy", "-a", app, "--confirm", app, "--wait", check=False)
    assert_gone_everywhere(world, app)


def cli_at_once(world: Controlled, commands: list[list[str]]) -> list[Any]:
    """Each `dynoform ARGS` on the controlled platform in its own thread, released together."""
    start = threading.Barrier(len(commands))
    results: list[Any] = [None] * len(commands)

    def one(i: int) -> None:
        start.wait()
        results[i] = world.cli(*commands[i], check=False, timeout=600)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(commands))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=630)
    assert all(r is not None for r in results), "a command did not finish"
    return results
