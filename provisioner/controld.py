"""The controller's edge on a runner host: `python3 -m provisioner.controld CONFIG`.

dynoform-controller.service runs it (controlhost.py installs both). It reads the config the
bootstrap left (the target, this host's id, the platform's SSH key), makes a Context that
reaches the other hosts from inside the fleet, and runs the controller until SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from provisioner.context import Context
from provisioner.fleet import OnFleet
from provisioner.ops.controller import Controller
from provisioner.targets import Target


def say(message: str) -> None:
    print(message, flush=True)  # journald keeps it: `journalctl -u dynoform-controller`


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m provisioner.controld CONFIG.json", file=sys.stderr)
        return 2
    config = json.loads(Path(args[0]).read_text())
    target = Target(**config["target"])
    on_fleet = OnFleet(host_id=str(config["host"]), ssh_key=str(config["ssh_key"]))
    with Context(target, say=say, on_fleet=on_fleet) as ctx:
        controller = Controller(ctx, on_fleet.host_id)
        signal.signal(signal.SIGTERM, lambda *_: controller.stop.set())
        signal.signal(signal.SIGINT, lambda *_: controller.stop.set())
        say(f"controller on {on_fleet.host_id} started")
        controller.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
