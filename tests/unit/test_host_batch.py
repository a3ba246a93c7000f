"""The host batch's document (golden file), its output, the marked web units, and the plan's
BOOT actions, which the batch does.

The document is what `dyno-ports batch` runs on a host (tests/unit/test_dyno_ports.py runs it
for real). Regenerate the golden file after an intended change:
UPDATE_GOLDEN=1 pytest tests/unit/test_host_batch.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from provisioner.model.formation import ProcessFormation
from provisioner.plan.batch import (
    PORT_MARK,
    HostBatch,
    Release,
    batch_argv,
    batch_document,
    parse_batch,
)
from provisioner.plan.placement import DynoRef
from provisioner.plan.rollout import ActionKind, plan_converge
from provisioner.plan.units import DynoInstance
from provisioner.render import render_dyno_unit

GOLDEN = Path(__file__).parent / "golden" / "batch"
WEB = DynoInstance("shop", 4, "web.1", "i-1", 20001)
SECRET = "s3cr3t-value"


def sample(units: bool = True) -> HostBatch:
    marked = {WEB.unit: "[Service]\nEnvironment=PORT=@PORT@\nSocketBindAllow=tcp:@PORT@\n"}
    return HostBatch(
        user_argv=["sh", "-c", "make-user", "sh", "dyno-shop"],
        launcher_path="/usr/local/lib/dynoform/dyno-launch",
        launcher="#!/bin/sh\n",
        release=Release(
            ["sh", "-c", "<unpack-release>", "sh", "/srv/dynoform/apps/shop/releases/v4", "ab"],
            "https://s3.test/slugs/shop/4.tgz?X-Amz-Signature=f00",
        ),
        env_path="/srv/dynoform/apps/shop/env/v4.json",
        env_document=json.dumps({"config": {"API_KEY": SECRET}}) + "\n",
        units=marked if units else {},
        start_argv=["sh", "-c", "<start-units>", "sh", WEB.unit] if units else [],
        port_range=(20000, 29999),
        addr="198.18.0.11",
        boot_timeout_s=60,
    )


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{name} differs from its golden file"


def shown(document: bytes) -> str:
    return json.dumps(json.loads(document), indent=1, sort_keys=True) + "\n"


def test_the_document_matches_its_golden_file() -> None:
    check_golden("web.json", shown(batch_document(sample())))


def test_a_host_with_no_new_web_dyno_only_takes_the_release() -> None:
    steps = json.loads(batch_document(sample(units=False)))["steps"]
    assert [s["op"] for s in steps] == ["run", "write", "run", "write"]
    assert [s.get("name") for s in steps if s["op"] == "run"] == [
        "creating the app's user",
        "unpack-release",
    ]


def test_config_and_the_slug_url_go_on_stdin_only() -> None:
    argv = batch_argv("TOOL SOURCE")
    assert argv == ["python3", "-I", "-c", "TOOL SOURCE", "batch"]
    document = batch_document(sample())
    assert SECRET.encode() in document and b"X-Amz-Signature" in document
    for step in json.loads(document)["steps"]:
        # No argv of a step carries either: the URL is the unpack's stdin.
        assert not any(SECRET in a or "Signature" in a for a in step.get("argv", []))
    unpack = next(s for s in json.loads(document)["steps"] if s.get("name") == "unpack-release")
    assert unpack["stdin"] == 'url = "https://s3.test/slugs/shop/4.tgz?X-Amz-Signature=f00"\n'


def test_the_output_gives_reserved_ports_and_the_waits_verdicts() -> None:
    out = (
        "reserved dyno-shop.v4.web.1.service 20003\n"
        "reserved dyno-shop.v4.web.2.service 20004\n"
        "ok 20003\n"
        "foreign 20004 321 dyno-blog.v9.web.1.service\n"
    )
    done = parse_batch(out)
    assert done.reserved == {
        "dyno-shop.v4.web.1.service": 20003,
        "dyno-shop.v4.web.2.service": 20004,
    }
    assert done.checks[20003].state == "ok"
    assert (done.checks[20004].state, done.checks[20004].holder) == (
        "foreign",
        "321 dyno-blog.v9.web.1.service",
    )
    assert parse_batch("").reserved == {} and parse_batch("").checks == {}


def test_a_marked_web_unit_is_the_unit_once_the_host_puts_its_port_in() -> None:
    marked = render_dyno_unit(WEB, port=PORT_MARK)
    assert marked.count(PORT_MARK) == 2
    assert "Environment=PORT=@PORT@\n" in marked and "SocketBindAllow=tcp:@PORT@\n" in marked
    assert marked.replace(PORT_MARK, "20007") == render_dyno_unit(WEB.with_port(20007))
    worker = DynoInstance("shop", 4, "worker.1", "i-1")
    assert render_dyno_unit(worker, port=PORT_MARK) == render_dyno_unit(worker)


def test_the_batch_boots_the_new_web_dynos_and_nothing_else() -> None:
    formation = {"web": ProcessFormation(2), "worker": ProcessFormation(1)}
    placement = {
        DynoRef("shop", "web", 1): "h1",
        DynoRef("shop", "web", 2): "h2",
        DynoRef("shop", "worker", 1): "h1",
    }
    old = [
        DynoInstance("shop", 3, "web.1", "h1", 20000),
        DynoInstance("shop", 3, "web.2", "h2", 20000),
        DynoInstance("shop", 3, "worker.1", "h1"),
    ]
    plan = plan_converge("shop", 4, formation, placement, old)
    assert [(a.kind, a.dyno) for a in plan.booting()] == [
        (ActionKind.BOOT, "web.1"),
        (ActionKind.BOOT, "web.2"),
    ]
    # The first step, before everything else: registered only once they answer. The worker
    # starts by itself (after its old one stops).
    assert plan.steps()[0] == plan.booting()
    kinds = [(a.kind, a.dyno) for a in plan.actions]
    assert kinds.index((ActionKind.REGISTER, "web.1")) > kinds.index((ActionKind.BOOT, "web.1"))
    assert (ActionKind.START, "worker.1") in kinds
