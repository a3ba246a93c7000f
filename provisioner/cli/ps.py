"""`ps`: dynos, scaling, sizes, restarts; `maintenance`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import typer

from provisioner.cli.common import (
    AppOption,
    emit_json,
    g,
    print_table,
    resolve_app,
    settled_app,
    status,
)
from provisioner.errors import DynoformError
from provisioner.model.formation import Formation, apply_resize, apply_scale
from provisioner.ops.rollout import Rollout, open_rollout
from provisioner.ops.router import sync_rules
from provisioner.plan.units import DynoState

group = typer.Typer(
    help="Dynos.\n\nExample: dynoform ps:scale web=2 worker=1 -a myapp", invoke_without_command=True
)
maintenance = typer.Typer(
    help="Maintenance mode.\n\nExample: dynoform maintenance:on -a myapp", no_args_is_help=True
)
COLUMNS = ["name", "type", "state", "host", "release", "since", "restarts", "memory_mb"]


def dyno_row(state: DynoState) -> dict[str, Any]:
    inst = state.instance
    if state.active == "active" and state.sub == "running":
        label = "up"
    elif state.sub == "auto-restart" or state.active == "failed":
        label = "crashed"
    elif state.active in ("activating", "reloading"):
        label = "starting"
    elif state.active == "deactivating":
        label = "stopping"
    else:
        label = state.active or "unknown"
    since = (
        datetime.fromtimestamp(state.since, UTC).isoformat(timespec="seconds")
        if state.since
        else None
    )
    memory = round(state.memory_bytes / 2**20, 1) if state.memory_bytes else None
    return {
        "name": inst.name,
        "type": inst.type,
        "state": label,
        "host": inst.host,
        "release": f"v{inst.release}",
        "since": since,
        "restarts": state.restarts,
        "memory_mb": memory,
        "size": inst.size,
        "port": inst.port,
    }


def _with_rollout(fn: Callable[[Rollout], Any]) -> Any:
    rollout = open_rollout(g().ctx)
    return fn(rollout)


@group.callback()
def ps(ctx: typer.Context, app: str = AppOption) -> None:
    """List dynos. Example: dynoform ps -a myapp --json"""
    if ctx.invoked_subcommand is not None:
        return
    name = settled_app(app)
    g().store.app(name)
    states = _with_rollout(lambda r: r.observe().of_app(name))
    rows = [
        dyno_row(s)
        for s in sorted(
            states, key=lambda s: (s.instance.type, s.instance.index, s.instance.release)
        )
    ]
    rows = [r for r in rows if r["state"] != "inactive"]
    if g().json:
        emit_json(rows)
    else:
        print_table(rows, COLUMNS, empty=f"no dynos for {name}: deploy, or scale with ps:scale")


def _change_formation(
    app: str,
    change: Callable[[Formation, set[str]], Formation],
    what: str,
    restart: Iterable[str] = (),
) -> None:
    store = g().store
    with store.lease(app, what):
        release = store.current_release(app)
        if release is None or not release.slug_key:
            raise DynoformError(f"{app} has no deployed release", "deploy first: dynoform deploy")
        formation, etag = store.formation(app)
        new = change(formation, set(release.process_types))
        config = store.release_config(app, release.version)
        # The wish is recorded first: a command killed half-way is finished by the repair.
        store.save_formation(app, new, etag)
        try:
            _with_rollout(lambda r: r.converge(app, release, config, new, restart))
        except BaseException:
            store.save_formation(app, formation, store.formation(app)[1])  # undone: as before
            raise
    summary = ", ".join(f"{k}={v.quantity}:{v.size}" for k, v in sorted(new.items()))
    status(f"{what} {app}: {summary}")


@group.command("scale")
def scale(
    requests: list[str] = typer.Argument(..., help="TYPE=N, TYPE+N, TYPE-N or TYPE=N:SIZE."),
    app: str = AppOption,
) -> None:
    """Scale dynos. Example: dynoform ps:scale web=3 worker=1 -a myapp"""
    name = resolve_app(app)
    _change_formation(name, lambda f, known: apply_scale(f, requests, known), "scaled")


@group.command("type")
def resize(
    requests: list[str] = typer.Argument(..., help="TYPE=SIZE, e.g. web=standard-2x."),
    app: str = AppOption,
) -> None:
    """Change dyno sizes. Example: dynoform ps:type web=standard-2x -a myapp"""
    name = resolve_app(app)
    _change_formation(name, lambda f, known: apply_resize(f, requests, known), "resized")


@group.command("restart")
def restart(
    target: str = typer.Argument(None, help="A type (web) or dyno (web.1); default all."),
    app: str = AppOption,
) -> None:
    """Restart dynos (web: rolling, with preboot). Example: dynoform ps:restart web -a myapp"""
    name = resolve_app(app)
    release = g().store.current_release(name)
    known = set(release.process_types) if release else set()
    targets = [target] if target else sorted(known)
    _change_formation(name, lambda f, _known: f, "restarted", targets)


@group.command("stop")
def stop(
    dyno: str = typer.Argument(..., help="A dyno such as web.1, or a type."), app: str = AppOption
) -> None:
    """Stop dynos until the next deploy, restart or scale. Example: dynoform ps:stop worker.1 -a myapp"""
    name = resolve_app(app)

    def do(rollout: Rollout) -> list[str]:
        observed = rollout.observe()
        stopped = []
        for state in observed.of_app(name):
            inst = state.instance
            if dyno in (inst.name, inst.type) and state.active != "inactive":
                rollout.conn(inst.host, observed).run(
                    ["systemctl", "stop", inst.unit], sudo=True, check=True
                )
                stopped.append(inst.name)
        return stopped

    stopped = _with_rollout(do)
    if not stopped:
        raise DynoformError(f"no running dyno {dyno} of {name}", "see `dynoform ps`")
    status(f"stopped {', '.join(stopped)} of {name}")


def _set_maintenance(app: str | None, on: bool) -> None:
    name = resolve_app(app)
    record = g().store.update_app(name, lambda data: data.update(maintenance=on))
    sync_rules(g().ctx, name, record)
    status(f"maintenance mode is {'on' if on else 'off'} for {name}")


@maintenance.command("on")
def maintenance_on(app: str = AppOption) -> None:
    """The router answers 503 with a page. Example: dynoform maintenance:on -a myapp"""
    _set_maintenance(app, True)


@maintenance.command("off")
def maintenance_off(app: str = AppOption) -> None:
    """Serve the app again. Example: dynoform maintenance:off -a myapp"""
    _set_maintenance(app, False)


def register(root: typer.Typer) -> None:
    root.add_typer(group, name="ps")
    root.add_typer(maintenance, name="maintenance")
