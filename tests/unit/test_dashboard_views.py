"""The dashboard's view models and pages, from fixed operation results (golden pages).

Regenerate the golden pages after an intended change:
UPDATE_GOLDEN=1 pytest tests/unit/test_dashboard_views.py
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from provisioner.dashboard import views
from provisioner.dashboard.actions import Activity
from provisioner.dashboard.server import templates
from provisioner.fleet import HostRow
from provisioner.model.addons import Addon, Attachment
from provisioner.model.formation import ProcessFormation
from provisioner.model.release import Release
from provisioner.ops.apps import AppRow
from provisioner.ops.domains import DomainRow
from provisioner.ops.ps import Dyno

GOLDEN = Path(__file__).parent / "golden" / "dashboard"
HOSTILE = '<script>alert("x")</script>'


def dyno(name: str, state: str, host: str, memory: float | None = 40.0) -> Dyno:
    kind = name.split(".")[0]
    return Dyno(
        name, kind, state, host, "v2", "2026-11-30T22:00:00+00:00", 0, memory, "basic", 5000
    )


DYNOS = {
    "shop": [
        dyno("web.1", "up", "i-a"),
        dyno("web.2", "crashed", "i-b"),
        dyno("worker.1", "up", "i-a"),
    ],
    "blog": [dyno("web.1", "starting", "i-b", None)],
}
ROWS = [
    AppRow("shop", "v2"),
    AppRow("blog", "v1"),
    AppRow("empty", None),
    AppRow("bad", None, "damaged record"),
]
URLS = {"shop": "https://shop.localhost:8443/", "blog": "https://blog.localhost:8443/"}
HOSTS = [
    HostRow("i-b", "198.18.1.11", "zone-b", "t3.medium", "running", True, 2),
    HostRow("i-a", "198.18.1.10", "zone-a", "t3.small", "running", True, 2),
    HostRow("i-c", "198.18.1.12", "zone-a", "t3.small", "running", True, None, "addons"),
]
MEMORY = {"t3.small": 2048, "t3.medium": 4096}.get
VITALS = {"i-a": views.Vitals(0.5, 0.25, 0.125, 2048, 1024)}


def release(version: int, status: str = "succeeded", description: str = "Deploy abc123") -> Release:
    return Release(
        version, description, "ann@example.com", f"2026-11-30T2{version}:00:00+00:00", status
    )


RELEASES = [release(3, "failed", HOSTILE), release(2), release(1)]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{name} differs from its golden file"


def test_app_cards_count_dynos_by_state_and_host() -> None:
    cards = views.app_cards(ROWS, URLS, DYNOS)
    assert [c.name for c in cards] == ["bad", "blog", "empty", "shop"]
    shop = cards[3]
    assert shop.states == [views.Count("crashed", 1), views.Count("up", 2)]
    assert shop.hosts == [views.Count("i-a", 2), views.Count("i-b", 1)]
    assert (shop.url, shop.release, shop.dynos) == (URLS["shop"], "v2", 3)
    assert (cards[2].url, cards[2].states, cards[2].dynos) == (None, [], 0)
    assert cards[0].error == "damaged record"


def test_host_loads_add_reserved_memory_and_rss_per_host() -> None:
    loads = views.host_loads(HOSTS, [d for ds in DYNOS.values() for d in ds], MEMORY, VITALS)
    assert [h.id for h in loads] == ["i-c", "i-a", "i-b"]  # by role, zone, id
    addons, a, b = loads
    assert (a.reserved_mb, a.memory_mb, a.reserved_percent, a.rss_mb) == (1024, 2048, 50, 80.0)
    assert (b.reserved_mb, b.memory_mb, b.reserved_percent, b.rss_mb) == (1024, 4096, 25, 40.0)
    assert (addons.dynos, addons.reserved_mb, addons.rss_mb, addons.vitals) == (None, 0, None, None)
    assert a.vitals == VITALS["i-a"]


def test_parse_vitals_reads_loadavg_and_meminfo() -> None:
    text = (
        "0.52 0.31 0.20 2/345 6789\n"
        "MemTotal:        4028440 kB\n"
        "MemFree:          123456 kB\n"
        "MemAvailable:    2014220 kB\n"
    )
    assert views.parse_vitals(text) == views.Vitals(0.52, 0.31, 0.2, 3934, 1967)
    assert views.parse_vitals("0.1 0.2 0.3 1/2 3\n") == views.Vitals(0.1, 0.2, 0.3)
    assert views.parse_vitals("") is None
    assert views.parse_vitals("sh: cat: not found\n") is None


def test_release_rows_mark_the_current_one_and_keep_the_newest() -> None:
    many = [release(v % 9 + 1) for v in range(30)]
    assert len(views.release_rows(many, 1)) == views.RELEASES_SHOWN
    rows = views.release_rows(RELEASES, 2)
    assert [(r.name, r.current, r.created_at) for r in rows] == [
        ("v3", False, "2026-11-30 23:00:00"),
        ("v2", True, "2026-11-30 22:00:00"),
        ("v1", False, "2026-11-30 21:00:00"),
    ]


def test_addon_rows_leave_out_secrets_and_resources() -> None:
    addon = Addon(
        "postgres-shop-1",
        "postgres",
        "mini",
        "local",
        "shop",
        state="available",
        attachments=[Attachment("shop", "DATABASE_URL"), Attachment("blog", "SHOP_DB_URL")],
        resource={"host": "198.18.1.12"},
        secret="hunter2",
    )
    (row,) = views.addon_rows([addon], "shop")
    assert row == views.AddonRow(
        "postgres-shop-1", "postgres", "mini", "available", ["DATABASE_URL"]
    )
    assert "hunter2" not in repr(row)


def test_short_time() -> None:
    assert views.short_time("2026-11-30T23:18:38.123456+01:00") == "2026-11-30 22:18:38"
    assert views.short_time("not a time") == "not a time"
    assert views.short_time(None) == ""


def overview() -> views.Overview:
    return views.Overview(
        apps=views.app_cards(ROWS, URLS, DYNOS),
        hosts=views.host_loads(HOSTS, [d for ds in DYNOS.values() for d in ds], MEMORY, VITALS),
        warnings=[f"host i-d does not answer: {HOSTILE}"],
    )


def app_page() -> views.AppPage:
    card = views.app_cards(ROWS, URLS, DYNOS)[3]
    return views.app_page(
        card,
        maintenance=False,
        formation={"web": ProcessFormation(2), "worker": ProcessFormation(1, "standard-2x")},
        dynos=DYNOS["shop"],
        releases=RELEASES,
        current=2,
        config_names=["SECRET_KEY", "DATABASE_URL"],
        domains=[DomainRow("shop.localhost", "default", "platform wildcard")],
        addons=[],
    )


def test_the_overview_page_matches_its_golden_file() -> None:
    check_golden(
        "overview.html",
        templates().get_template("overview.html").render(view=overview(), title="Apps"),
    )


def test_the_app_page_matches_its_golden_file() -> None:
    activities = [Activity("shop", "restart web", 1764540000.0, "failed", HOSTILE)]
    page = (
        templates()
        .get_template("app.html")
        .render(view=app_page(), activities=activities, title="shop")
    )
    check_golden("app.html", page)


def test_pages_escape_what_they_show() -> None:
    pages = [
        templates().get_template("overview.html").render(view=overview(), title="Apps"),
        templates()
        .get_template("app.html")
        .render(
            view=app_page(),
            activities=[Activity("shop", "x", 0.0, "failed", HOSTILE)],
            title="shop",
        ),
    ]
    for page in pages:
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
        assert page.count("<script") == 1  # only ours, from /static


def test_the_rss_column_shows_only_when_a_host_knows_it() -> None:
    """cgroup v1 hosts (the local cloud) report no memory per unit."""
    unknown = [replace(d, memory_mb=None) for ds in DYNOS.values() for d in ds]
    view = views.Overview(apps=[], hosts=views.host_loads(HOSTS, unknown, MEMORY, {}))
    page = templates().get_template("overview.html").render(view=view, title="Apps")
    assert "Dynos' RSS" not in page and "Reserved by dynos" in page
    assert "Dynos' RSS" in templates().get_template("overview.html").render(
        view=overview(), title="Apps"
    )
