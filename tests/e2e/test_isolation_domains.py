"""Custom domains between apps that share the router, end to end on the local cloud: an app
cannot add another app's name or a wildcard, and of two apps adding one domain at the same
moment exactly one gets it."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Url, cli, cli_at_once, cli_json, get, new_app

from provisioner.aws.rules import listener_rules

pytestmark = pytest.mark.cloud


@pytest.fixture
def apps(fleet: object) -> Iterator[list[str]]:
    """Two more apps on the shared platform, destroyed afterwards."""
    made = [new_app("dom"), new_app("dom")]
    yield made
    for name in made:
        cli("apps:destroy", "-a", name, "--confirm", name, check=False)


def _rules(aws: Any) -> dict[str, list[str]]:
    """The HTTPS listener's app rules: rule ARN -> its host-header values."""
    info = cli_json("platform:info")
    assert isinstance(info, dict)
    rules = listener_rules(aws.elbv2, info["https_listener_arn"])  # the local cloud pages them
    return {
        r["RuleArn"]: [
            v for c in r["Conditions"] for v in c.get("HostHeaderConfig", {}).get("Values", [])
        ]
        for r in rules
        if not r["IsDefault"]
    }


def _custom_domains(app: str) -> list[str]:
    rows = cli_json("domains", "-a", app)
    assert isinstance(rows, list)
    return [row["hostname"] for row in rows if row["kind"] == "custom"]


def _page(tmp_path: Path, app: str) -> Path:
    src = tmp_path / app
    src.mkdir()
    (src / "index.html").write_text(f"<h1>the page of {app}</h1>\n")
    return src


def test_another_apps_name_and_wildcards_are_refused(
    app_name: str, apps: list[str], local_cloud: Any, tmp_path: Path
) -> None:
    victim, attacker = app_name, apps[0]
    # The attacker's rule exists first, so it comes before the victim's in priority order:
    # a name of the victim's in it would take the victim's traffic.
    cli("domains:add", f"www.{attacker}.example.test", "-a", attacker)
    cli("deploy", "-a", victim, str(_page(tmp_path, victim)))
    url = Url.of_app(victim)
    assert get(url, "/") == (200, f"<h1>the page of {victim}</h1>\n".encode())
    before = _rules(local_cloud)

    for name, reason in [
        (f"{victim}.localhost", "is under the platform's domain localhost"),
        (f"{victim.upper()}.localhost.", "is under the platform's domain localhost"),
        ("*.example.com", "wildcard domains are not supported"),
    ]:
        result = cli("domains:add", name, "-a", attacker, check=False)
        assert result.returncode == 1, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: domain {name!r}: "), lines
        assert reason in lines[0]

    assert _rules(local_cloud) == before
    assert _custom_domains(attacker) == [f"www.{attacker}.example.test"]
    assert get(url, "/") == (200, f"<h1>the page of {victim}</h1>\n".encode())


def _add_at_once(apps: list[str], domain: str) -> dict[str, Any]:
    """`domains:add DOMAIN` by each app, all started at the same moment."""
    done = cli_at_once([["domains:add", domain, "-a", app] for app in apps], timeout=300)
    return dict(zip(apps, done, strict=True))


def test_one_domain_added_by_two_apps_at_once_has_one_owner(
    apps: list[str], local_cloud: Any
) -> None:
    for _ in range(4):
        domain = f"same-{secrets.token_hex(3)}.example.test"
        results = _add_at_once(apps, domain)
        winners = [app for app in apps if results[app].returncode == 0]
        assert len(winners) == 1, {a: (r.returncode, r.stderr[-300:]) for a, r in results.items()}
        (winner,) = winners
        (loser,) = set(apps) - {winner}
        error = results[loser].stderr.strip().splitlines()
        assert error == [
            f"error: {domain} is already a domain of {winner} (hint: remove it there first: "
            f"dynoform domains:remove {domain} -a {winner})"
        ], json.dumps(error)
        holding = [hosts for hosts in _rules(local_cloud).values() if domain in hosts]
        assert holding == [[f"{winner}.localhost", domain]]
        assert domain in _custom_domains(winner) and domain not in _custom_domains(loser)
        cli("domains:remove", domain, "-a", winner)  # the next round starts from none
