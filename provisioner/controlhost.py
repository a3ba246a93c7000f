"""The controller's install on a runner: dynoform's own code, its config and the platform's SSH
key, and a systemd service; playbook steps that `hosts:bootstrap` runs after the runner role's.

The code goes as one deterministic tarball (sorted names, no times, no owners), so a host that
has it already reports no change, and a newer dynoform's bootstrap upgrades every controller
(the service restarts when its code, config or key changed). Its libraries (boto3, fabric,
jinja2) are Debian's, installed by the runner role.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner import paths
from provisioner import playbook as pb
from provisioner.targets import Target

if TYPE_CHECKING:
    import jinja2

UNIT = "dynoform-controller.service"
HOME = "/opt/dynoform/controller"
CODE_TAR = f"{HOME}/code.tar.gz"
CODE_DIR = f"{HOME}/code"
CONF_DIR = "/etc/dynoform/controller"
CONFIG = f"{CONF_DIR}/config.json"
SSH_KEY = f"{CONF_DIR}/ssh-key"
RESOURCES = ("templates", "playbooks")  # what the controller reads besides the package
# Restart a running controller on a change (nothing to do before its unit exists).
_RESTART = (
    "sh",
    "-c",
    'if systemctl cat -- "$1" >/dev/null 2>&1; then systemctl try-restart -- "$1"; fi',
    "sh",
    UNIT,
)
# Unpack beside the old code and swap, so a controller never starts on half a tree.
_UNPACK = (
    "sh",
    "-c",
    'set -e; rm -rf "$2.new"; mkdir -m 0700 "$2.new"; tar -xzf "$1" -C "$2.new";'
    ' rm -rf "$2"; mv "$2.new" "$2"',
    "sh",
    CODE_TAR,
    CODE_DIR,
)


def _members() -> list[tuple[str, Path]]:
    package = Path(__file__).resolve().parent
    found = [
        (f"provisioner/{p.relative_to(package)}", p)
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts
    ]
    for name in RESOURCES:
        root = paths.resource_dir(name)
        found += [(f"{name}/{p.relative_to(root)}", p) for p in root.rglob("*") if p.is_file()]
    return sorted(found)


@cache
def code_bundle() -> bytes:
    """dynoform's code as a tar.gz whose bytes depend only on the files' names and contents."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in _members():
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def host_config(target: Target, endpoint_url: str | None, host_id: str) -> bytes:
    """What the controller on `host_id` needs to open its Context (no credentials: on AWS the
    instance profile gives them, the local cloud needs none)."""
    fields = asdict(target)
    fields["endpoint_url"] = endpoint_url
    fields["profile"] = None  # the user's profile names nothing on a host: boto3's chain finds
    # the instance profile there
    doc = {"target": fields, "host": host_id, "ssh_key": SSH_KEY}
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()


def steps(
    bundle: bytes, config: bytes, ssh_key: bytes, templates: jinja2.Environment
) -> list[pb.Step]:
    unit = templates.get_template("host/dynoform-controller.service.j2").render(
        code_dir=CODE_DIR, config_path=CONFIG
    )
    reload = (("systemctl", "daemon-reload"), ("systemctl", "enable", "--", UNIT), _RESTART)
    return [
        pb.Directory("/opt/dynoform", 0o755),
        pb.Directory(HOME, 0o700),
        pb.Directory(CONF_DIR, 0o700),
        pb.File(CONFIG, config, 0o600, after=(_RESTART,)),
        pb.File(SSH_KEY, ssh_key, 0o600, after=(_RESTART,)),
        pb.File(CODE_TAR, bundle, 0o600, after=(_UNPACK, _RESTART)),
        pb.File(f"/etc/systemd/system/{UNIT}", unit.encode(), 0o644, after=reload),
        pb.UnitActive(UNIT),
    ]
