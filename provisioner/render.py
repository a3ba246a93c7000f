"""Rendering (pure): jinja2 with StrictUndefined over the shipped templates/ directory.

Dyno units come from templates/dyno/dyno.service.j2, one file per dyno instance (see
provisioner.plan.units for why not a template unit). Config vars never go into a unit: they go
into the release's env document (JSON, root:root 0600 on the host), which systemd hands to the
dyno as a credential and templates/dyno/dyno-launch turns into the environment.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from provisioner.errors import DynoformError
from provisioner.model.config import validate_config
from provisioner.model.sizes import dyno_size
from provisioner.paths import resource_dir
from provisioner.plan.ports import PORT_HIGH, PORT_LOW, PORTS_TOOL
from provisioner.plan.units import (
    DYNO_UID_MAX,
    DYNO_UID_MIN,
    DynoInstance,
    app_user,
    env_file,
    release_dir,
)

if TYPE_CHECKING:  # imported on the first render: ~20 ms that commands rendering nothing skip
    from jinja2 import Environment

LAUNCHER_PATH = "/usr/local/lib/dynoform/dyno-launch"  # where hosts keep templates/dyno/dyno-launch
DYNO_SLICE = "dynoform.slice"  # rendered by the host playbook from templates/host/
# IMDS over IPv4 and IPv6 (Nitro instances): dynos must never reach instance credentials.
METADATA_ADDRESSES = ("169.254.169.254", "fd00:ec2::254")
ENV_FORMAT = 1


@dataclass(frozen=True)
class UnitOptions:
    stop_timeout_s: int = 30  # Heroku: SIGTERM, then SIGKILL after 30 s
    restart_sec: str = "1s"  # first restart after a crash
    restart_steps: int = 8  # ... growing to the maximum over this many restarts
    restart_max_delay: str = "5min"
    slice: str = DYNO_SLICE
    launcher: str = LAUNCHER_PATH


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The one jinja2 environment: strict (a missing value is an error), no HTML escaping."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(
        loader=FileSystemLoader(str(resource_dir("templates"))),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_one_line,
    )


def _one_line(value: Any) -> Any:
    # Unit files are line based: a newline inside a value would add a directive.
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        raise DynoformError(f"refusing to render a value with a line break: {value!r}")
    return value


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


DYNO_UNIT_TEMPLATE = "dyno/dyno.service.j2"


def preload_dyno_unit() -> None:
    """Import jinja2 and compile the dyno unit's template (~20 ms alone, ~0.1 s when each host's
    thread of a rollout did it at once beside other work): a deploy does it during its build."""
    environment().get_template(DYNO_UNIT_TEMPLATE)


def dyno_unit_context(instance: DynoInstance, options: UnitOptions | None = None) -> dict[str, Any]:
    opts = options or UnitOptions()
    if instance.is_web and not instance.port:
        raise DynoformError(f"web dyno {instance.name} of {instance.app} has no port")
    return {
        "app": instance.app,
        "release": instance.release,
        "dyno": instance.name,
        "process_type": instance.type,
        "port": instance.port if instance.is_web else None,
        "size": dyno_size(instance.size),
        "user": app_user(instance.app),
        "release_dir": release_dir(instance.app, instance.release),
        "env_file": env_file(instance.app, instance.release),
        "launcher": opts.launcher,
        "slice": opts.slice,
        "metadata_addresses": " ".join(METADATA_ADDRESSES),
        "port_range": f"{PORT_LOW}-{PORT_HIGH}",
        "stop_timeout_s": opts.stop_timeout_s,
        "restart_sec": opts.restart_sec,
        "restart_steps": opts.restart_steps,
        "restart_max_delay": opts.restart_max_delay,
    }


def render_dyno_unit(
    instance: DynoInstance, options: UnitOptions | None = None, port: str | None = None
) -> str:
    """The systemd unit file text for one dyno instance; install it as `instance.unit`.

    port: a web unit's port as this text (provisioner.plan.batch.PORT_MARK: the host puts in
    the one it reserves), instead of the instance's."""
    context = dyno_unit_context(instance, options)
    if port is not None and instance.is_web:
        context["port"] = port
    return render_template(DYNO_UNIT_TEMPLATE, **context)


def render_env_document(config: Mapping[str, str], commands: Mapping[str, str]) -> str:
    """The release's env document: config vars and Procfile commands, as JSON.

    Write it on the host as root:root 0600 at provisioner.plan.units.env_file(app, release).
    """
    data = {
        "format": ENV_FORMAT,
        "config": validate_config(config),
        "commands": dict(sorted(commands.items())),
    }
    return json.dumps(data, ensure_ascii=False, indent=1, sort_keys=False) + "\n"


# Unit settings that make no sense for a one-off dyno or are given as systemd-run options.
_NOT_FOR_RUN = {"ExecStart", "Restart", "RestartSec", "RestartSteps", "RestartMaxDelaySec", "Slice"}


def run_dyno_argv(
    instance: DynoInstance,
    command: str,
    tty: bool = False,
    detach: bool = False,
    options: UnitOptions | None = None,
    keep: bool = False,
) -> list[str]:
    """systemd-run argv (as root on the host) for a one-off dyno such as `run.1`.

    It gets exactly the isolation and limits of the release's dyno units (same template), the
    config through the same credential, and runs `command` after .profile.d like any dyno.
    Attached (the default) it waits and exits with the command's status; with tty=True it
    gives the command a terminal (ssh -t); detach=True returns at once and logs to the journal.
    keep=True (detached): the unit stays loaded after the command ends, with its exit status,
    until stopped (cron runs: the controller reads the status, then collects the unit).
    `command` is the user's own command line, not a secret.
    """
    opts = options or UnitOptions()
    unit = render_dyno_unit(instance, opts)
    # --expand-environment=no: the command reaches the dyno's shell as typed, `${X%/*}` intact.
    argv = [
        "systemd-run",
        "--quiet",
        "--expand-environment=no",
        f"--unit={instance.unit}",
        f"--slice={opts.slice}",
    ]
    if detach and keep:
        argv += ["--no-block", "-p", "RemainAfterExit=yes"]
    elif detach:
        argv += ["--no-block", "--collect"]
    else:
        argv += ["--wait", "--collect", "--pty" if tty else "--pipe"]
    for section, key, value in _settings(unit):
        if section == "Unit" and key == "Description":
            argv.append(f"--description={value}")
        elif section == "Service" and key not in _NOT_FOR_RUN:
            argv += ["-p", f"{key}={value}"]
    return [*argv, "--", opts.launcher, "--run", command]


def _settings(unit_text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every setting of a rendered unit, in order."""
    section = ""
    result = []
    for line in unit_text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            result.append((section, key, value))
    return result


@dataclass(frozen=True)
class ApiEndpoint:
    """Where a target's cloud API answers when it is not AWS's public endpoints: the local
    cloud's moto, or a target's --endpoint-url. Dynos and builds must never reach it."""

    addresses: tuple[str, ...]  # IP addresses, v4 or v6
    port: int


def _no_resolver(name: str) -> list[str]:
    raise DynoformError(f"endpoint host {name!r} is a name, and no resolver was given")


def api_endpoint(
    url: str | None, resolve: Callable[[str], list[str]] = _no_resolver
) -> ApiEndpoint | None:
    """The endpoint of `url` (None on AWS proper: its endpoints are public, and runners hold
    no credentials to use them). `resolve` turns a host name into addresses (the edge's DNS)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DynoformError(f"endpoint URL {url!r} is not http(s)://HOST[:PORT]")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = [str(ipaddress.ip_address(parts.hostname))]
    except ValueError:
        addresses = sorted({str(ipaddress.ip_address(a)) for a in resolve(parts.hostname)})
    if not addresses:
        raise DynoformError(f"endpoint host {parts.hostname!r} has no address")
    return ApiEndpoint(tuple(addresses), port)


def wall_vars(api: ApiEndpoint | None) -> dict[str, Any]:
    """The target's part of templates/dyno/metadata-block.nft.j2 (the runner role adds it)."""
    if api is None:
        return {"api_rules": []}
    families = {4: "ip", 6: "ip6"}
    return {
        "api_rules": [
            f"{families[ipaddress.ip_address(a).version]} daddr {a} tcp dport {api.port}"
            for a in api.addresses
        ]
    }


def render_metadata_block(api: ApiEndpoint | None = None) -> str:
    """nftables rules that keep every dyno and build (uid in the dyno range) off the metadata
    service and off the cloud API endpoint `api` (the local cloud's moto).

    A second wall next to the units' IPAddressDeny=, which needs a cgroup-v2 BPF firewall that
    some hosts lack. Load with `nft -f FILE` (idempotent: the table is flushed and rebuilt).
    """
    return render_template(
        "dyno/metadata-block.nft.j2",
        uid_min=DYNO_UID_MIN,
        uid_max=DYNO_UID_MAX,
        ipv4=METADATA_ADDRESSES[0],
        ipv6=METADATA_ADDRESSES[1],
        **wall_vars(api),
    )


def ports_tool_source() -> str:
    """templates/dyno/dyno-ports, handed to python3 on a host's stdin (see plan/ports.py)."""
    return (resource_dir("templates") / PORTS_TOOL).read_text(encoding="utf-8")


def launcher_source() -> str:
    """templates/dyno/dyno-launch, to install on hosts at LAUNCHER_PATH (root:root 0755)."""
    return (resource_dir("templates") / "dyno" / "dyno-launch").read_text(encoding="utf-8")


@cache
def host_program(name: str) -> str:
    """templates/dyno/NAME: a shell program that hosts run as `sh -c PROGRAM sh ARGS...`.

    Read once. Its leading comment block (what it does, how it is called) stays here: the
    program goes on the command line of every call and into the messages of failed ones.
    """
    text = (resource_dir("templates") / "dyno" / name).read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)
