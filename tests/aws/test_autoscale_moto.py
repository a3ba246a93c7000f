"""Autoscaling against moto: the policy through the CLI, and the controller's tick reading the
ALB's TargetResponseTime from CloudWatch (moto taught percentiles, as the local cloud runs it)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cli_support import platform_cli

from provisioner import events
from provisioner.aws import metrics
from provisioner.context import Context
from provisioner.model.formation import ProcessFormation
from provisioner.model.release import Release
from provisioner.ops import autoscale
from provisioner.plan import autoscale as plan
from provisioner.store import now_iso
from provisioner.targets import get_target

OWNED = (
    "error: web of shop is autoscaled (1..6 dynos, p95 goal 300 ms): autoscaling owns its "
    "quantity (hint: dynoform ps:autoscale:disable web -a shop, then scale)\n"
)


@pytest.fixture
def cli(moto_cli):
    return moto_cli


def test_policy_commands_and_a_manual_scale_refused(cli):
    assert cli("apps:create", "shop")[0] == 0
    assert cli("ps:autoscale", "-a", "shop")[1] == (
        "shop is not autoscaled (dynoform ps:autoscale:enable web ...)\n"
    )
    code, _, err = cli("ps:autoscale:enable", "worker", "--max", "2", "--p95", "100", "-a", "shop")
    assert (code, err) == (
        1,
        "error: process type 'worker': only web dynos can be autoscaled (as on Heroku): the "
        "router's response times measure web dynos alone\n",
    )
    code, _, err = cli("ps:autoscale:enable", "web", "--min", "3", "--max", "2", "--p95", "1", "-a", "shop")  # fmt: skip
    assert (code, err) == (1, "error: --max: must be between --min (3) and 100\n")
    code, _, err = cli("ps:autoscale:enable", "web", "--min", "1", "--max", "6", "--p95", "300", "-a", "shop")  # fmt: skip
    assert (code, err) == (
        0,
        "autoscaling shop web: 1..6 dynos, p95 goal 300 ms, scale in after 300 s\n",
    )
    code, out, _ = cli("ps", "autoscale", "-a", "shop", "--json")
    assert json.loads(out) == {
        "app": "shop",
        "policy": {"type": "web", "min": 1, "max": 6, "p95_ms": 300, "scale_in_after": 300.0},
        "quantity": None,  # nothing deployed yet
        "decisions": [],
    }
    assert cli("ps:autoscale", "-a", "shop")[1] == (
        "shop web: 1..6 dynos, p95 goal 300 ms, scale in after 300 s (not deployed)\n"
        "decisions: none yet\n"
    )
    assert cli("ps:scale", "web=3", "-a", "shop")[2] == OWNED
    assert cli("ps:scale", "worker=1", "web+1", "-a", "shop")[2] == OWNED
    code, _, err = cli("ps:scale", "worker=1", "-a", "shop")  # not autoscaled: scaled as ever
    assert code == 1 and "shop has no deployed release" in err
    assert cli("ps:autoscale:disable", "-a", "shop")[2] == (
        "autoscaling of web disabled for shop: scale it with ps:scale\n"
    )
    code, _, err = cli("ps:autoscale:disable", "web", "-a", "shop")
    assert (code, err) == (1, "error: web of shop is not autoscaled\n")
    assert "autoscaled" not in cli("ps:scale", "web=3", "-a", "shop")[2]


def test_the_policy_goes_with_the_app(cli):
    assert cli("apps:create", "shop")[0] == 0
    assert cli("ps:autoscale:enable", "--max", "2", "--p95", "100", "-a", "shop")[0] == 0
    assert cli("apps:destroy", "-a", "shop", "--confirm", "shop")[0] == 0
    assert cli("apps:create", "shop")[0] == 0
    assert json.loads(cli("ps:autoscale", "-a", "shop", "--json")[1])["policy"] is None


def _deployed(ctx: Context, app: str, web: int) -> str:
    """An app with a release (no hosts here: nothing runs) and its target group; its ARN."""
    ctx.store.create_app(app)
    template = Release(1, "Deploy", "test", now_iso(), status="succeeded", slug_key="slug",
                       slug_sha256="0" * 64, process_types={"web": "serve"})  # fmt: skip
    ctx.store.create_release(app, lambda v: replace(template, version=v), {})
    ctx.store.save_formation(app, {"web": ProcessFormation(web)}, ctx.store.formation(app)[1])
    return ctx.router().ensure_target_group(app)


def _said(ctx: Context, app: str) -> list[str]:
    return [e.message for e in events.recent(ctx.store.docs, 20, app) if e.source == "autoscale"]


def test_the_tick_reads_cloudwatch_and_says_what_it_decided(tmp_path, monkeypatch, capsys):
    with platform_cli(tmp_path, monkeypatch, capsys) as call:
        ctx = Context(get_target("t1"))
        tg_arn = _deployed(ctx, "busy", web=1)
        now = time.time()
        cloudwatch = ctx.aws.client("cloudwatch")
        # What the ALB (or the local router) publishes: 19 requests of 0.3 s and one of 0.01 s.
        cloudwatch.put_metric_data(
            Namespace=metrics.NAMESPACE,
            MetricData=[
                {
                    "MetricName": metrics.METRIC,
                    "Dimensions": metrics.dimensions(ctx.platform().lb_arn, tg_arn),
                    "Timestamp": datetime.fromtimestamp(now - 1, UTC),
                    "Values": [0.3, 0.01],
                    "Counts": [19.0, 1.0],
                    "Unit": "Seconds",
                }
            ],
        )
        windows = metrics.response_times(cloudwatch, ctx.platform().lb_arn, tg_arn, now)
        assert [(w.p95_ms, w.requests) for w in windows] == [(300.0, 20)]
        policy = autoscale.enable(ctx, "busy", "web", 1, 1, 100, 60)
        minute = datetime.fromtimestamp(windows[0].start, UTC).strftime("%H:%M")

        def guard() -> None:
            pass

        assert autoscale.follow(ctx, "busy", policy, guard, now) is None  # seen above once
        decision = autoscale.follow(ctx, "busy", policy, guard, now + 10)
        held = (
            f"web stays at 1: p95 300 ms > goal 100 ms (20 requests in the minute from {minute} "
            "UTC), above it for 10 s; 1 is the maximum"
        )
        assert decision is not None and decision.message == held
        assert autoscale.follow(ctx, "busy", policy, guard, now + 20) is not None
        assert _said(ctx, "busy") == [
            "enabled: web: 1..1 dynos, p95 goal 100 ms, scale in after 60 s",
            held,  # said once while the reason stays
        ]
        shown = autoscale.status(ctx, "busy")
        assert (shown.quantity, [d.action for d in shown.decisions]) == (1, ["at-max"])

        # A quiet app above its minimum is scaled in, through ps.scale under its lease; with no
        # hosts here the scale fails, is said with its error, and the formation stays.
        _deployed(ctx, "idle", web=2)
        idle = autoscale.enable(ctx, "idle", "web", 1, 3, 100, 0)
        decision = autoscale.follow(ctx, "idle", idle, guard, now)
        assert decision is not None and decision.action == "failed"
        assert decision.message.startswith(
            "web 2 -> 1: quiet (0 requests in the last two minutes), for 0 s; failed: "
        )
        assert ctx.store.formation("idle")[0]["web"].quantity == 2
        state = ctx.store.docs.get(plan.state_key("idle"))
        assert state is not None and state.data["changed_at"] == now

        # a command holding the app's lease: the tick leaves it to the next one
        with ctx.store.lease("idle", "scaled"):
            later = now + 30
            assert autoscale.follow(ctx, "idle", idle, guard, later) is None
        assert [e for e in _said(ctx, "idle") if "failed" in e] == [decision.message]
        code, out, _ = call("ps:autoscale", "-a", "idle")
        assert code == 0 and out.splitlines()[0] == (
            "idle web: 1..3 dynos, p95 goal 100 ms, scale in after 0 s (2 now)"
        )
