"""Dyno instances and their systemd unit names (pure).

One unit per dyno instance: `dyno-<app>.v<N>.<type>.<n>.service`, or with a restart generation
`dyno-<app>.v<N>-<g>.<type>.<n>.service`. Why not a template unit `dyno-<app>@.service`:
every dyno has values of its own (release dir, PORT, size limits, release), and a template can only
pass one opaque instance string (`%i`); preboot also needs the old and the new instance of `web.1`
side by side. A plain unit per instance keeps every value literal in the file, so
`systemd-analyze verify` checks exactly what runs and `systemctl cat` shows it.
The name parses back without ambiguity: app names and process types hold no '.'.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

from provisioner.errors import DynoformError
from provisioner.model.names import validate_app_name, validate_process_type
from provisioner.model.procfile import ONE_OFF_TYPES
from provisioner.model.sizes import DEFAULT_SIZE

UNIT_PREFIX = "dyno-"
_UNIT_RE = re.compile(
    r"dyno-(?P<app>[a-z][a-z0-9-]*)\.v(?P<release>\d+)(?:-(?P<gen>\d+))?"
    r"\.(?P<type>[A-Za-z0-9_-]+)\.(?P<index>\d+)\.service"
)
MAX_USER_NAME = 31  # systemd and utmp accept at most 31 characters in a user name
# Per-app users get uids (and groups gids) from this range only, so one host firewall rule can
# match every dyno by uid (see templates/dyno/metadata-block.nft.j2). Outside both the usual
# system range (<1000) and systemd's DynamicUser= range (61184-65519).
DYNO_UID_MIN = 40000
DYNO_UID_MAX = 49999


@dataclass(frozen=True, order=True)
class DynoInstance:
    """One running (or to-be-started) dyno: `web.1` of release v3 on host i-0abc, port 20001.

    gen counts restarts of the same release, so a restarted web dyno can boot next to the one
    it replaces (preboot) under a different unit name.
    """

    app: str
    release: int
    name: str
    host: str
    port: int | None = None
    gen: int = 0
    size: str = DEFAULT_SIZE

    @property
    def type(self) -> str:
        return self.name.rpartition(".")[0]

    @property
    def index(self) -> int:
        return int(self.name.rpartition(".")[2])

    @property
    def is_web(self) -> bool:
        return self.type == "web"

    @property
    def is_oneoff(self) -> bool:
        """A `run.N` or `scheduler.N` dyno: not in the formation, it lives until it exits or
        is stopped."""
        return self.type in ONE_OFF_TYPES

    @property
    def unit(self) -> str:
        return unit_name(self.app, self.release, self.name, self.gen)

    def with_port(self, port: int | None) -> DynoInstance:
        return replace(self, port=port)


def unit_name(app: str, release: int, dyno: str, gen: int = 0) -> str:
    validate_app_name(app)
    kind, _, index = dyno.rpartition(".")
    validate_process_type(kind)
    if not index.isdigit() or release < 1 or gen < 0:
        raise DynoformError(f"dyno {dyno!r} of release v{release}: expected TYPE.N and v1 or later")
    run = f"v{release}" if gen == 0 else f"v{release}-{gen}"
    return f"{UNIT_PREFIX}{app}.{run}.{kind}.{int(index)}.service"


def parse_unit_name(unit: str, host: str = "", port: int | None = None) -> DynoInstance | None:
    """A dyno unit name back to its instance; None for units that are not dynos."""
    match = _UNIT_RE.fullmatch(unit)
    if not match:
        return None
    return DynoInstance(
        app=match["app"],
        release=int(match["release"]),
        name=f"{match['type']}.{int(match['index'])}",
        host=host,
        port=port,
        gen=int(match["gen"] or 0),
    )


# ActiveStates of a dyno that runs or is on its way to: it holds memory and a port.
RUNNING_STATES = ("active", "activating", "reloading")


@dataclass(frozen=True)
class DynoState:
    """What systemd on a host says about one dyno unit (for ps and for planning)."""

    instance: DynoInstance
    active: str  # ActiveState: active, activating, deactivating, failed, inactive
    sub: str  # SubState: running, auto-restart, dead, ...
    main_pid: int
    restarts: int
    since: int | None  # unix seconds the unit became active
    memory_bytes: int | None


FACT_PROPERTIES = (
    "Id,ActiveState,SubState,MainPID,NRestarts,Environment,ActiveEnterTimestamp,MemoryCurrent"
)


def dyno_facts_argv(app: str | None = None) -> list[str]:
    """argv listing the loaded dyno units of one app (or all apps) on a host."""
    pattern = (
        f"{UNIT_PREFIX}{validate_app_name(app)}.*.service" if app else f"{UNIT_PREFIX}*.service"
    )
    return ["systemctl", "show", f"--property={FACT_PROPERTIES}", "--timestamp=unix", pattern]


def parse_dyno_facts(text: str, host: str) -> list[DynoState]:
    """Parse the output of dyno_facts_argv: blank-line separated blocks of KEY=VALUE."""
    states = []
    for block in text.split("\n\n"):
        props = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        state = _state(props, host)
        if state:
            states.append(state)
    return sorted(states, key=lambda s: s.instance)


def _state(props: dict[str, str], host: str) -> DynoState | None:
    env = dict(item.partition("=")[::2] for item in props.get("Environment", "").split())
    port = env.get("PORT", "")
    instance = parse_unit_name(props.get("Id", ""), host, int(port) if port.isdigit() else None)
    if instance is None:
        return None
    if env.get("DYNOFORM_SIZE"):
        instance = replace(instance, size=env["DYNOFORM_SIZE"])
    since = props.get("ActiveEnterTimestamp", "").lstrip("@")
    memory = props.get("MemoryCurrent", "")
    return DynoState(
        instance=instance,
        active=props.get("ActiveState", ""),
        sub=props.get("SubState", ""),
        main_pid=_int(props.get("MainPID")),
        restarts=_int(props.get("NRestarts")),
        since=int(since) if since.isdigit() else None,
        memory_bytes=int(memory) if memory.isdigit() else None,
    )


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


def journal_tail_argv(unit: str, lines: int = 20) -> list[str]:
    """argv for a dyno's last log lines (shown when a deploy fails)."""
    return ["journalctl", "--no-pager", "-o", "cat", "-n", str(lines), "-u", unit]


def app_user(app: str) -> str:
    """The unprivileged per-app user that runs its dynos: `dyno-<app>`, shortened if too long."""
    validate_app_name(app)
    name = f"dyno-{app}"
    if len(name) <= MAX_USER_NAME:
        return name
    digest = hashlib.sha256(app.encode()).hexdigest()[:8]
    return f"dyno-{app[:17]}-{digest}"


def create_app_user_argv(app: str) -> list[str]:
    """argv (run as root on the host) that creates the app's user and group, uid in range.

    Run it only when `getent passwd <user>` finds nothing (useradd fails on an existing user).
    """
    return [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/app",
        "--shell",
        "/usr/sbin/nologin",
        "-K",
        f"SYS_UID_MIN={DYNO_UID_MIN}",
        "-K",
        f"SYS_UID_MAX={DYNO_UID_MAX}",
        "-K",
        f"SYS_GID_MIN={DYNO_UID_MIN}",
        "-K",
        f"SYS_GID_MAX={DYNO_UID_MAX}",
        app_user(app),
    ]


def ensure_app_user_argv(app: str) -> list[str]:
    """argv (as root) that creates the app's user unless it exists: one round trip."""
    script = 'user=$1; shift; getent passwd "$user" >/dev/null || exec "$@"'
    return ["sh", "-c", script, "sh", app_user(app), *create_app_user_argv(app)]


def app_dir(app: str) -> str:
    return f"/srv/dynoform/apps/{validate_app_name(app)}"


def release_dir(app: str, release: int) -> str:
    return f"{app_dir(app)}/releases/v{release}"


def env_file(app: str, release: int) -> str:
    """The release's config + commands, root:root 0600, loaded with LoadCredential=."""
    return f"{app_dir(app)}/env/v{release}.json"
