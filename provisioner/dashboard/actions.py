"""The few changes the dashboard makes: restart, scale, rollback, maintenance on and off.

Each calls the operation the CLI calls (which takes the app's lease itself) in a thread of its
own, so that a page does not wait for a rolling restart; the app's page lists them with how they
ended. A second change while one runs meets the lease as the CLI would.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.ops import ps, releases

KEPT = 20  # activities kept per app
SCALE_FORM = re.compile(r"[a-z][a-z0-9_-]{0,29}=\d{1,3}")


@dataclass(frozen=True)
class Activity:
    app: str
    what: str  # "restart web", "scale web=2", "rollback to v3", "maintenance on"
    started: float
    state: str = "running"  # running, done, failed
    message: str = ""


def describe(action: str, form: Mapping[str, str]) -> tuple[str, Callable[[Context, str], object]]:
    """What a POSTed action does, checked before anything runs (DynoformError when wrong)."""
    if action == "restart":
        which = form.get("target") or None
        return f"restart {which or 'all'}", lambda ctx, app: ps.restart(ctx, app, which)
    if action == "scale":
        request = f"{form.get('type', '')}={form.get('quantity', '')}"
        if not SCALE_FORM.fullmatch(request):  # the operation checks the type and bounds
            raise DynoformError(
                f"scale request {request!r}", "expected a process type and a number"
            )
        return f"scale {request}", lambda ctx, app: ps.scale(ctx, app, [request])
    if action == "rollback":
        version = form.get("version", "").removeprefix("v")
        if not version.isdigit():
            raise DynoformError(f"release {form.get('version')!r}", "pick a release such as v3")
        number = int(version)
        return f"rollback to v{number}", lambda ctx, app: releases.rollback(ctx, app, number)
    if action in ("maintenance-on", "maintenance-off"):
        on = action == "maintenance-on"
        return f"maintenance {'on' if on else 'off'}", lambda ctx, app: ps.set_maintenance(
            ctx, app, on
        )
    raise DynoformError(f"unknown action {action!r}")


class Activities:
    """Changes started from the page and how they ended, newest first, per app."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.lock = threading.Lock()
        self.by_app: dict[str, list[Activity]] = {}

    def start(self, app: str, action: str, form: Mapping[str, str]) -> Activity:
        what, run = describe(action, form)
        activity = Activity(app, what, time.time())
        self._put(activity)
        threading.Thread(target=self._run, args=(activity, run), daemon=True).start()
        return activity

    def of(self, app: str) -> list[Activity]:
        with self.lock:
            return list(self.by_app.get(app, ()))

    def _run(self, activity: Activity, run: Callable[[Context, str], object]) -> None:
        try:
            run(self.ctx, activity.app)
            ended = replace(activity, state="done")
        except DynoformError as exc:
            ended = replace(activity, state="failed", message=exc.message)
        except Exception as exc:  # noqa: BLE001 - shown on the page; the server goes on
            ended = replace(activity, state="failed", message=f"{type(exc).__name__}: {exc}")
        self._put(ended)

    def _put(self, activity: Activity) -> None:
        with self.lock:
            kept = [a for a in self.by_app.get(activity.app, ()) if a.started != activity.started]
            self.by_app[activity.app] = sorted([activity, *kept], key=lambda a: -a.started)[:KEPT]
