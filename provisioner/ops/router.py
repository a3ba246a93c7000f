"""Where an app is served: its web URL on AWS, or through the local cloud's HAProxy."""

from __future__ import annotations

from provisioner.aws.platform import Shard
from provisioner.context import Context
from provisioner.errors import NoPlatform
from provisioner.model.app import App
from provisioner.targets import Target


def local_listener_url(target: Target, listener_arn: str) -> str | None:
    """The loopback URL the local cloud's HAProxy serves a listener on (None on AWS)."""
    return target.local.listener_url(listener_arn) if target.local is not None else None


def web_url(ctx: Context, app: str) -> str | None:
    """`https://<app>.localhost:<port>/` on the local cloud; `https://<app>.<domain>/` on AWS.

    A platform made before HTTPS (no HTTPS listener yet) gives the http:// URL until
    `platform:init` runs again."""
    try:
        platform = ctx.platform(create=False)
    except NoPlatform:
        return None
    host = f"{app}.{ctx.target.app_domain}"
    scheme = "https" if platform.https_listener_arn else "http"
    if not ctx.target.is_local:
        return f"{scheme}://{host}/"
    url = local_listener_url(ctx.target, ctx.router().listeners_of(app).rules)
    if url is None:
        return None
    port = url.rsplit(":", 1)[1].rstrip("/")
    return f"{scheme}://{host}:{port}/"


def app_shard(ctx: Context, app: str) -> Shard:
    """The load balancer the app is placed on (the first one for an app not placed yet)."""
    shard = ctx.router().shard_of(app) or 0
    shards = ctx.platform(create=False).all_shards
    return shards[shard] if shard < len(shards) else shards[0]


def dns_hint(ctx: Context, app: str, host: str) -> str:
    """Where a custom domain's DNS must point: the load balancer's name on AWS; locally,
    how to reach the local router with that name."""
    ctx.platform(create=False)
    router = ctx.router()
    if not ctx.target.is_local:
        dns = app_shard(ctx, app).lb_dns
        return f"point {host} at {dns} (a CNAME; an ALIAS record at a zone apex)"
    url = local_listener_url(ctx.target, router.listeners_of(app).rules)
    if url is None:
        return f"{host} is routed; the local router is not serving yet"
    port = url.rsplit(":", 1)[1].rstrip("/")
    return (
        f"the local router serves it on 127.0.0.1:{port}: "
        f"curl --resolve {host}:{port}:127.0.0.1 https://{host}:{port}/"
    )


def sync_rules(ctx: Context, app: App) -> None:
    """Put the app's rules on the load balancer as its record says (domains, maintenance,
    plain HTTP)."""
    ctx.router().ensure_rule(app.name, list(app.domains), app.maintenance, app.plain_http)
