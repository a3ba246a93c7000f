"""The controller's drift duty: what differs from the manifest last applied, logged as
`dynoform[drift]` (a `config:set` by hand, a security group rule opened in the console, a
runner gone). It only reports; `dynoform apply` reverts.

Each difference is logged once, when first seen, and "no drift" once when all are gone (the
lines seen last are kept in the state store, so a new leader does not repeat them). Sources and
SSM values are not checked here: the controller has no checkout and does not read SSM.
"""

from __future__ import annotations

from collections.abc import Callable

from provisioner import events
from provisioner.aws.network import DYNO_PORTS
from provisioner.context import Context
from provisioner.errors import DynoformError
from provisioner.ops.manifest_state import applied, observe_apps, observe_platform
from provisioner.plan.manifest import Desired, plan_changes

SOURCE = "drift"
TICK_SECONDS = 300.0
SEEN_DOC = "manifest/drift.json"


def check(ctx: Context) -> list[tuple[str | None, str]] | None:
    """(app, line) for each difference from the applied manifest; None when none was applied."""
    try:
        manifest = applied(ctx)
        if manifest is None:
            return None
        desired = Desired(manifest, dyno_ports=DYNO_PORTS)
        found = plan_changes(desired, observe_platform(ctx), observe_apps(ctx, manifest))
    except DynoformError as exc:  # a `keep` var gone, an app's records damaged: reported too
        return [(None, f"cannot compare with the manifest: {exc.message}")]
    return [(change.app, change.line()) for change in found.changes]


def tick(ctx: Context, guard: Callable[[], None]) -> None:
    found = check(ctx)
    if found is None:
        return
    docs = ctx.store.docs
    doc = docs.get(SEEN_DOC)
    seen = list(doc.data.get("lines", [])) if doc is not None else []
    lines = [line for _, line in found]
    if lines == seen:
        return
    guard()  # only the leader reports
    for app, line in found:
        if line not in seen:
            events.record(docs, SOURCE, f"drift from the manifest: {line}", app)
    if not lines:
        events.record(docs, SOURCE, "no drift: what exists matches the manifest")
    docs.put(SEEN_DOC, {"lines": lines})
