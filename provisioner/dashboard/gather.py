"""What the pages show, read through the same operations the CLI calls.

One observation of the fleet serves the whole overview (apps' dynos and hosts' load); an app's
page asks the operations `ps`, `releases`, `config`, `domains` and `addons` use.
"""

from __future__ import annotations

from provisioner.context import Context
from provisioner.dashboard import views
from provisioner.errors import DynoformError
from provisioner.fleet import HostRow
from provisioner.model.addons import Addon
from provisioner.model.sizes import instance_memory_mb
from provisioner.ops import addons, apps, config, domains, hosts, ps, releases, router
from provisioner.ops.rollout import open_rollout
from provisioner.plan.units import DynoState
from provisioner.remote.fanout import fan_out

VITALS_ARGV = ["cat", "/proc/loadavg", "/proc/meminfo"]


def overview(ctx: Context) -> views.Overview:
    host_rows = hosts.list_hosts(ctx)  # NoPlatform first, before the fleet is asked
    observed = open_rollout(ctx).observe()
    all_dynos = [d for states in observed.dynos.values() for d in _running(states)]
    rows = apps.list_apps(ctx)
    by_app = {row.name: _running(observed.of_app(row.name)) for row in rows}
    urls = {row.name: router.web_url(ctx, row.name) for row in rows}
    warnings = [
        f"host {h} does not answer: {why}" for h, why in sorted(observed.unreachable.items())
    ]
    return views.Overview(
        apps=views.app_cards(rows, urls, by_app),
        hosts=views.host_loads(host_rows, all_dynos, instance_memory_mb, vitals(ctx, host_rows)),
        warnings=warnings,
    )


def vitals(ctx: Context, rows: list[HostRow]) -> dict[str, views.Vitals]:
    """Load and memory of every running, bootstrapped host, asked in parallel; a host that does
    not answer is left out."""

    def ask(row: HostRow) -> views.Vitals | None:
        result = hosts.exec_command(ctx, row.id, VITALS_ARGV, timeout=10)
        return views.parse_vitals(result.stdout) if result.exit_code == 0 else None

    ready = [r for r in rows if r.state == "running" and r.bootstrapped]
    found: dict[str, views.Vitals] = {}
    for outcome in fan_out(ready, ask, timeout=15):
        if outcome.ok and outcome.value is not None:
            found[outcome.item.id] = outcome.value
    return found


def app_page(ctx: Context, app: str) -> views.AppPage:
    info = apps.info(ctx, app)  # NotFound for an app that does not exist
    record = apps.get(ctx, app)
    dynos = ps.list_dynos(ctx, app)
    card = views.AppCard(
        name=app,
        url=info.web_url,
        release=None if info.release is None else f"v{info.release}",
        states=[],
        hosts=[],
    )
    return views.app_page(
        card,
        maintenance=record.maintenance,
        formation=info.formation,
        dynos=dynos,
        releases=releases.list_releases(ctx, app),
        current=info.release,
        config_names=list(config.show(ctx, app)),  # names only: values stay here
        domains=domains.list_domains(ctx, app),
        addons=_addons(ctx, app),
    )


def _addons(ctx: Context, app: str) -> list[Addon]:
    try:
        return addons.list_addons(ctx, app)
    except DynoformError as exc:
        ctx.say(f"warning: add-ons of {app}: {exc.message}")
        return []


def _running(states: list[DynoState]) -> list[ps.Dyno]:
    """As `ps` lists them: units that run or try to."""
    return [d for d in map(ps.dyno_of, states) if d.state != "inactive"]
