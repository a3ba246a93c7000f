"""Commands killed half-way: the next command repairs, and records agree with what runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from e2e_support import EXAMPLES, Url, cli, cli_json, get

from provisioner.aws.router import target_group_name
from provisioner.aws.session import Aws
from provisioner.targets import LOCAL_TARGET, get_target

pytestmark = pytest.mark.cloud
LEASE_TTL = 10  # a killed command's lease runs out sooner than the default 30 s


@pytest.fixture(autouse=True)
def _short_leases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNOFORM_LEASE_TTL", str(LEASE_TTL))


def kill_when(args: list[str], marker: str, sig: int = signal.SIGKILL) -> str:
    """Run `dynoform ARGS`, send `sig` once a stderr line contains marker; its stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioner", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "DYNOFORM_TARGET": "local"},
        # A test run started in the background inherits an ignored SIGINT: Ctrl-C must reach
        # the command as it does in a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            proc.send_signal(sig)
            break
    proc.wait(timeout=120)
    seen.append(proc.stderr.read())
    assert any(marker in line for line in seen), "".join(seen)
    return "".join(seen)


def registered_targets(app: str) -> set[tuple[str, int]]:
    aws = Aws(LOCAL_TARGET)
    name = target_group_name(get_target("local").platform, app)
    arn = aws.elbv2.describe_target_groups(Names=[name])["TargetGroups"][0]["TargetGroupArn"]
    described = aws.elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    return {
        (d["Target"]["Id"], int(d["Target"]["Port"]))
        for d in described
        if d["TargetHealth"]["State"] != "draining"
    }


def web_targets(app: str) -> set[tuple[str, int]]:
    hosts = {h["id"]: h["private_ip"] for h in cli_json("hosts")}  # type: ignore[union-attr]
    rows = cli_json("ps", "-a", app)
    assert isinstance(rows, list)
    return {(hosts[r["host"]], int(r["port"])) for r in rows if r["type"] == "web"}


def assert_one_truth(app: str) -> str:
    """releases, apps:info, ps, the router and the pages all name one release; returns it."""
    releases = cli_json("releases", "-a", app)
    assert isinstance(releases, list)
    assert not [r for r in releases if r["status"] == "pending"], releases
    info = cli_json("apps:info", "-a", app)
    assert isinstance(info, dict)
    current = f"v{info['release']}"
    # Old web dynos leave the router at once and stop after the drain delay (5 s).
    deadline = time.monotonic() + 20
    while True:
        rows = cli_json("ps", "-a", app)
        assert isinstance(rows, list)
        web = [r for r in rows if r["type"] == "web"]
        if {r["release"] for r in web} == {current} or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert web and {r["release"] for r in web} == {current}, json.dumps(rows)
    assert all(r["state"] == "up" for r in web), rows
    assert registered_targets(app) == web_targets(app)
    url = Url.of_app(app)
    for _ in range(6):
        status, body = get(url)
        assert status == 200 and f'"release": "{current}"' in body.decode(), body[:200]
    return current


@pytest.mark.parametrize("marker", ["starting web.1", "healthy in the router"])
def test_config_set_killed_mid_rollout_is_repaired(app_name: str, marker: str) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    before = assert_one_truth(app_name)
    kill_when(["config:set", "-a", app_name, "STAGE=killed"], marker)

    # The killed command still holds the lease: reads show the release in progress.
    pending = [r for r in cli_json("releases", "-a", app_name) if r["status"] == "pending"]  # type: ignore[union-attr]
    assert len(pending) == 1

    repaired = cli("apps:repair", "--wait", "-a", app_name).stderr
    assert "was left pending by an interrupted command" in repaired, repaired
    current = assert_one_truth(app_name)
    value = cli("config:get", "-a", app_name, "STAGE", check=False).stdout.strip()
    if current == before:  # the change never served: it is not the app's config either
        assert value == ""
    else:  # it served: the app's config is the served one, not lost
        assert value == "killed"
    # The next change starts from the truth and works.
    cli("config:set", "-a", app_name, "STAGE=after")
    assert assert_one_truth(app_name) != current


def test_deploy_killed_during_the_build_frees_the_app(app_name: str) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    first = assert_one_truth(app_name)
    kill_when(["deploy", "-a", app_name, str(EXAMPLES / "python")], "building")
    started = time.monotonic()
    result = cli("deploy", "--wait", "-a", app_name, str(EXAMPLES / "python"))
    assert time.monotonic() - started < 60  # the dead holder's lease ran out (LEASE_TTL)
    assert "ended without releasing its lease" in result.stderr, result.stderr
    builds = cli_json("builds", "-a", app_name)
    assert isinstance(builds, list)
    assert not [b for b in builds if b["status"] in ("pending", "running")], builds
    assert assert_one_truth(app_name) == f"v{int(first[1:]) + 1}"  # no release of the killed


def test_ctrl_c_during_a_rollout_leaves_the_old_release_serving(app_name: str) -> None:
    cli("deploy", "-a", app_name, str(EXAMPLES / "python"))
    before = assert_one_truth(app_name)
    err = kill_when(
        ["config:set", "-a", app_name, "STAGE=interrupted"], "starting web.1", signal.SIGINT
    )
    assert "rolling back: interrupted" in err, err
    try:
        assert assert_one_truth(app_name) == before  # a read command repaired the pending release
    except AssertionError as exc:  # what the interrupted command said, to see why
        raise AssertionError(f"{exc}\n--- the interrupted command said:\n{err}") from None
    newest = cli_json("releases", "-a", app_name)[0]  # type: ignore[index]
    assert newest["status"] == "failed" and newest["version"] == int(before[1:]) + 1


def test_a_failed_scale_leaves_no_crash_looping_worker(app_name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "Procfile").write_text(
        "web: python3 -m http.server $PORT\nworker: sh -c 'echo boom; exit 3'\n"
    )
    cli("deploy", "-a", app_name, str(tmp_path))
    failed = cli("ps:scale", "worker=1", "-a", app_name, check=False)
    assert failed.returncode == 1 and "worker.1" in failed.stderr, failed.stderr
    rows = cli_json("ps", "-a", app_name)
    assert isinstance(rows, list)
    assert [r["name"] for r in rows] == ["web.1"], rows  # the worker is gone, not restarting
    formation = cli_json("apps:info", "-a", app_name)["formation"]  # type: ignore[index]
    assert formation["worker"]["quantity"] == 0


def test_a_web_that_exits_at_once_fails_the_deploy_without_waiting_out_the_boot_timeout(
    app_name: str,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    (tmp_path / "Procfile").write_text("web: sh -c 'echo cannot start; exit 3'\n")
    started = time.monotonic()
    result = cli("deploy", "-a", app_name, str(tmp_path), check=False)
    took = time.monotonic() - started
    assert result.returncode == 1
    assert "keeps exiting before it listens on $PORT" in result.stderr, result.stderr
    assert "cannot start" in result.stderr and "Action(" not in result.stderr
    assert took < 40, took  # the boot timeout is 60 s: a crash loop is seen in a few seconds
    releases = cli_json("releases", "-a", app_name)
    assert [r["status"] for r in releases] == ["failed"], releases  # type: ignore[index]
