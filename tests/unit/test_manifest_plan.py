"""The manifest's parser and the pure planner: manifests and observed state in, plans out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provisioner.errors import ValidationError
from provisioner.model.formation import ProcessFormation
from provisioner.model.manifest import CronSpec, ManifestError, key_line, parse_manifest
from provisioner.plan.manifest import (
    AppState,
    Desired,
    PlatformState,
    Rule,
    default_rules,
    plan_changes,
)

SHOP = """\
[platform]
runners = 2
ingress = ["tcp/6379 10.0.0.0/8"]

[apps.shop]
source = "shop"
domains = ["www.example.com"]
maintenance = false
cron = [{ schedule = "0 3 * * *", command = "python3 cleanup.py" }]

[apps.shop.formation]
web = 2
worker = { quantity = 1, size = "standard-2x" }

[apps.shop.config]
GREETING = "hello"
SECRET_KEY = { secret = "generate" }
DATABASE_URL = { keep = true }
API_TOKEN = { ssm = "/shop/api-token" }

[apps.shop-staging]
source = "shop"

[pipelines.shop]
stages = ["shop-staging", "shop"]
"""
PORTS = (1024, 65535)
DEFAULTS = tuple(default_rules(PORTS))


def lines(desired: Desired, platform: PlatformState | None, apps: dict[str, AppState], prune=False):
    result = plan_changes(desired, platform, apps, prune)
    return [c.line() for c in result.changes], result.unmanaged


def desired(text: str = SHOP, **kwargs) -> Desired:
    prints = kwargs.pop("fingerprints", {"shop": "a" * 40, "shop-staging": "a" * 40})
    ssm = kwargs.pop("ssm", {"/shop/api-token": "tok-1"})
    return Desired(parse_manifest(text), prints, ssm, PORTS)


def test_parses_every_part() -> None:
    manifest = parse_manifest(SHOP)
    shop = manifest.apps["shop"]
    assert manifest.platform.runners == 2
    assert shop.formation is not None and shop.formation["worker"].size == "standard-2x"
    assert shop.config is not None and shop.config["API_TOKEN"].path == "/shop/api-token"
    assert shop.cron == (CronSpec("0 3 * * *", "python3 cleanup.py"),)
    assert manifest.pipelines == {"shop": ("shop-staging", "shop")}


@pytest.mark.parametrize(
    ("bad", "good", "message"),
    [
        ("web = 2", 'web = "two"', "dynoform.toml:12: apps.shop.formation.web: must be a number"),
        ("web = 2", "web = 101", "dynoform.toml:12: apps.shop.formation.web: must be between 0"),
        ('"standard-2x"', '"huge"', "dynoform.toml:13: apps.shop.formation.worker.size: "),
        (
            "{ keep = true }",
            "{ keep = 1 }",
            "dynoform.toml:18: apps.shop.config.DATABASE_URL: must",
        ),
        ("runners = 2", "runners = -1", "dynoform.toml:2: platform.runners: must be between"),
        ("maintenance = false", "maintenence = false", "dynoform.toml:8: apps.shop.maintenence: "),
        ('"tcp/6379 10.0.0.0/8"', '"6379"', "dynoform.toml:3: platform.ingress: '6379'"),
        ('"0 3 * * *"', '"61 * * * *"', "dynoform.toml:9: apps.shop.cron.schedule: "),
        ('["shop-staging", "shop"]', '["shop"]', "dynoform.toml:25: pipelines.shop.stages: must"),
    ],
)
def test_errors_name_the_key_and_line(bad: str, good: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(SHOP.replace(bad, good, 1))
    assert str(caught.value).startswith(message), str(caught.value)


def test_bad_toml_names_the_file() -> None:
    with pytest.raises(ManifestError, match=r"^x.toml: is not valid TOML"):
        parse_manifest("[apps.shop\n", "x.toml")


def test_key_line_finds_dotted_and_nested_keys() -> None:
    assert key_line(SHOP, ("apps", "shop", "config", "GREETING")) == 16
    assert key_line(SHOP, ("apps", "shop", "config", "NOPE")) == 15  # its table
    assert key_line("a.b = 1\n", ("a", "b")) == 1


def test_keep_needs_the_key_to_exist() -> None:
    with pytest.raises(ValidationError, match="apps.shop.config.DATABASE_URL: is `keep = true`"):
        plan_changes(desired(), None, {})


def new_app() -> str:
    return SHOP.replace("DATABASE_URL = { keep = true }\n", "")


def test_golden_plan_of_a_new_app() -> None:
    changes, unmanaged = lines(
        desired(new_app()), PlatformState(2, DEFAULTS), {"old": AppState("old")}
    )
    assert changes == [
        "+ create platform.security_groups.runners.ingress[tcp/6379 10.0.0.0/8]",
        "+ create apps.shop",
        "+ create apps.shop.config.API_TOKEN: (sensitive) from ssm /shop/api-token",
        "+ create apps.shop.config.GREETING: hello",
        "+ create apps.shop.config.SECRET_KEY: (generated)",
        "^ deploy apps.shop.source: source aaaaaaa",
        "+ create apps.shop.formation.web: 2 standard-1x",
        "+ create apps.shop.formation.worker: 1 standard-2x",
        "+ create apps.shop.domains[www.example.com]",
        "+ create apps.shop.cron[0 3 * * * python3 cleanup.py]",
        "+ create apps.shop-staging",
        "^ deploy apps.shop-staging.source: source aaaaaaa",
    ]
    assert unmanaged == ["old"]


def converged(**changes) -> dict[str, AppState]:
    shop = AppState(
        "shop",
        formation={"web": ProcessFormation(2), "worker": ProcessFormation(1, "standard-2x")},
        config={
            "GREETING": "hello",
            "SECRET_KEY": "s3",
            "DATABASE_URL": "pg://",
            "API_TOKEN": "tok-1",
        },
        domains=("www.example.com",),
        cron={"j1": CronSpec("0 3 * * *", "python3 cleanup.py")},
        deployed="a" * 40,
        has_slug=True,
    )
    staging = AppState("shop-staging", deployed="a" * 40, has_slug=True)
    from dataclasses import replace

    return {"shop": replace(shop, **changes), "shop-staging": staging}


def test_converged_plan_is_empty() -> None:
    rules = (*DEFAULTS, Rule("runners", "tcp", 6379, 6379, "10.0.0.0/8"))
    assert lines(desired(), PlatformState(2, rules), converged()) == ([], [])


def test_golden_plan_of_drift() -> None:
    rules = (
        *DEFAULTS,
        Rule("runners", "tcp", 6379, 6379, "10.0.0.0/8"),
        Rule("runners", "tcp", 5432, 5432, "0.0.0.0/0"),  # opened by hand
        Rule("runners", "tcp", 22, 22, "203.0.113.7/32"),  # the operator's SSH: init's, kept
    )
    state = converged(
        config={
            "GREETING": "bye",
            "SECRET_KEY": "s3",
            "DATABASE_URL": "pg://",
            "API_TOKEN": "old",
            "DEBUG": "1",
        },
        formation={"web": ProcessFormation(1), "worker": ProcessFormation(1)},
        domains=("old.example.com",),
        maintenance=True,
        cron={},
        deployed="b" * 40,
    )
    changes, _ = lines(desired(), PlatformState(3, rules), state)
    assert changes == [
        "~ update platform.runners: 3 -> 2",
        "- delete platform.security_groups.runners.ingress[tcp/5432 0.0.0.0/0]",
        "~ update apps.shop.config.API_TOKEN: (sensitive) -> (sensitive) from ssm /shop/api-token",
        "~ update apps.shop.config.GREETING: (sensitive) -> hello",
        "- delete apps.shop.config.DEBUG: (sensitive)",
        "^ deploy apps.shop.source: source bbbbbbb -> source aaaaaaa",
        "~ update apps.shop.formation.web: 1 standard-1x -> 2 standard-1x",
        "~ update apps.shop.formation.worker: 1 standard-1x -> 1 standard-2x",
        "+ create apps.shop.domains[www.example.com]",
        "- delete apps.shop.domains[old.example.com]",
        "~ update apps.shop.maintenance: on -> off",
        "+ create apps.shop.cron[0 3 * * * python3 cleanup.py]",
    ]


def test_a_declared_ssh_cidr_replaces_others_and_defaults_come_back() -> None:
    text = SHOP.replace("runners = 2", 'runners = 2\nssh_cidr = "198.51.100.1/32"')
    rules = (Rule("runners", "tcp", 22, 22, "203.0.113.7/32"),)
    changes, _ = lines(desired(text), PlatformState(2, rules), converged())
    assert changes == [
        "+ create platform.security_groups.lb.ingress[tcp/80 0.0.0.0/0]",
        "+ create platform.security_groups.lb.ingress[tcp/443 0.0.0.0/0]",
        "+ create platform.security_groups.runners.ingress[tcp/22 198.51.100.1/32]",
        "+ create platform.security_groups.runners.ingress[tcp/22 sg:runners]",
        "+ create platform.security_groups.runners.ingress[tcp/1024-65535 sg:lb]",
        "+ create platform.security_groups.runners.ingress[tcp/6379 10.0.0.0/8]",
        "- delete platform.security_groups.runners.ingress[tcp/22 203.0.113.7/32]",
    ]


def test_unnamed_parts_and_apps_are_left_alone_unless_pruned() -> None:
    text = "[apps.shop]\n"
    state = {"shop": AppState("shop", config={"A": "1"}), "old": AppState("old")}
    assert lines(Desired(parse_manifest(text)), None, state) == ([], ["old"])
    assert lines(Desired(parse_manifest(text)), None, state, prune=True) == (
        ["- delete apps.old"],
        [],
    )


def test_json_never_holds_values() -> None:
    result = plan_changes(desired(new_app()), None, {})
    text = repr([c.to_dict() for c in result.changes])
    assert "tok-1" not in text and "address" in text
    secret = next(c for c in result.changes if c.key == "API_TOKEN")
    assert secret.value == "tok-1"  # what apply sets, kept out of every output


def test_formation_waits_for_a_first_release() -> None:
    text = "[apps.prod.formation]\nweb = 2\n"
    assert lines(Desired(parse_manifest(text)), None, {"prod": AppState("prod")}) == ([], [])
    built = AppState("prod", has_slug=True, formation={"web": ProcessFormation(1)})
    assert lines(Desired(parse_manifest(text)), None, {"prod": built}) == (
        ["~ update apps.prod.formation.web: 1 standard-1x -> 2 standard-1x"],
        [],
    )


def test_export_of_an_app_parses_back_to_an_empty_plan() -> None:
    from provisioner.ops.manifest import _export_app

    state = AppState(
        "shop",
        buildpacks=("https://example.com/pack.tgz",),
        formation={"web": ProcessFormation(2, "standard-2x"), "worker": ProcessFormation(0)},
        config={"SECRET": "never shown", "A": 'quote " and \\ backslash'},
        domains=("www.example.com",),
        maintenance=True,
        cron={"j1": CronSpec("*/5 * * * *", 'echo "hi" \\ there\ttab', overlap=True)},
        has_slug=True,
    )
    text = "\n".join(_export_app(state))
    assert "never shown" not in text and "backslash" not in text
    manifest = parse_manifest(text)
    assert lines(Desired(manifest), None, {"shop": state}) == ([], [])


def test_fingerprint_is_the_committed_tree_or_the_files(tmp_path) -> None:
    import subprocess

    from provisioner.ops.manifest import fingerprint

    src = tmp_path / "src"
    src.mkdir()
    (src / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    first = fingerprint(src)
    assert fingerprint(src) == first
    (src / "Procfile").chmod(0o755)
    assert fingerprint(src) != first
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    tree = subprocess.run([*git, "rev-parse", "HEAD^{tree}"], capture_output=True, text=True)
    assert fingerprint(src) == tree.stdout.strip()
    (src / "Procfile").write_text("web: changed but not committed\n")
    assert fingerprint(src) == tree.stdout.strip()  # what a deploy would build: HEAD


ADDONS = """\
[apps.shop]
addons = [
  { service = "postgres", plan = "small", provider = "managed" },
  { service = "redis", as = "CACHE" },
]

[apps.shop.config]
DATABASE_URL = { keep = true }
GREETING = "hello"
"""


def test_addons_are_made_and_their_vars_are_theirs() -> None:
    from provisioner.plan.manifest import AddonState

    manifest = parse_manifest(ADDONS)
    assert lines(Desired(manifest), None, {}) == (
        [
            "+ create apps.shop",
            "+ create apps.shop.addons[DATABASE_URL]: postgres small (managed)",
            "+ create apps.shop.addons[CACHE_URL]: redis small",
            "+ create apps.shop.config.GREETING: hello",
        ],
        [],
    )
    pg = AddonState("postgres-abc123", "postgres", "small", "managed", owned=True)
    shared = AddonState("redis-def456", "redis", "small", "self-hosted", owned=False)
    old = AddonState("redis-0ld000", "redis", "small", "self-hosted", owned=True)
    state = AppState(
        "shop",
        config={
            "DATABASE_URL": "pg://",
            "CACHE_URL": "r://",
            "OLD_URL": "r://",
            "GREETING": "hello",
        },
        addons={"DATABASE_URL": pg, "CACHE_URL": shared, "OLD_URL": old},
    )
    assert lines(Desired(manifest), None, {"shop": state}) == (
        ["- delete apps.shop.addons[OLD_URL]: redis-0ld000 (redis small, destroyed)"],
        [],
    )
    # An add-on of this app that another app uses too is never destroyed by leaving it out.
    used = AddonState("redis-0ld000", "redis", "small", "self-hosted", True, ("billing",))
    with pytest.raises(
        ValidationError, match=r"leaves out redis-0ld000 \(OLD_URL\), which billing"
    ):
        plan_changes(
            Desired(manifest),
            None,
            {"shop": replace(state, addons={**state.addons, "OLD_URL": used})},
        )
    bigger = ADDONS.replace('plan = "small"', 'plan = "medium"')
    with pytest.raises(
        ValidationError, match=r"apps.shop.addons\[DATABASE_URL\]: is postgres-abc123"
    ):
        plan_changes(Desired(parse_manifest(bigger)), None, {"shop": state})


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('service = "mysql"', "dynoform.toml:2: apps.shop.addons.service: one of postgres, redis"),
        ('plan = "huge"', "dynoform.toml:2: apps.shop.addons.plan: one of"),
        ('provider = "heroku"', "dynoform.toml:2: apps.shop.addons.provider: one of"),
        ('as = "CACHE"', "dynoform.toml:2: apps.shop.addons.as: two add-ons would be attached as"),
    ],
)
def test_addon_errors(bad: str, message: str) -> None:
    text = ADDONS.replace('{ service = "redis", as = "CACHE" }', '{ service = "redis", as = "X" }')
    good = {
        'service = "mysql"': ('service = "postgres", plan', 'service = "mysql", plan'),
        'plan = "huge"': ('plan = "small"', 'plan = "huge"'),
        'provider = "heroku"': ('provider = "managed"', 'provider = "heroku"'),
        'as = "CACHE"': ('service = "redis", as = "X"', 'service = "postgres", as = "DATABASE"'),
    }[bad]
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text.replace(*good))
    assert str(caught.value).startswith(message), str(caught.value)


def test_an_autoscaled_types_quantity_is_left_to_the_autoscaler() -> None:
    text = '[apps.shop]\nsource = "shop"\n[apps.shop.formation]\nweb = 2\nworker = 1\n'
    have = {"web": ProcessFormation(5), "worker": ProcessFormation(0)}
    state = AppState("shop", formation=have, has_slug=True, deployed="a" * 40)
    assert lines(desired(text), None, {"shop": state})[0] == [
        "~ update apps.shop.formation.web: 5 standard-1x -> 2 standard-1x",
        "~ update apps.shop.formation.worker: 0 standard-1x -> 1 standard-1x",
    ]
    autoscaled = replace(state, autoscaled=("web",))
    assert lines(desired(text), None, {"shop": autoscaled})[0] == [
        "~ update apps.shop.formation.worker: 0 standard-1x -> 1 standard-1x",
    ]
