"""What operations return, as the CLI prints it: dynos, app rows, app info (exact shapes)."""

import pytest

from provisioner.model.formation import ProcessFormation
from provisioner.ops.apps import AppInfo, AppRow
from provisioner.ops.ps import dyno_of
from provisioner.plan.units import DynoInstance, DynoState

WEB_2 = DynoInstance("shop", 3, "web.2", "i-0abc", port=20001, size="standard-1x")


@pytest.mark.parametrize(
    "active,sub,label",
    [
        ("active", "running", "up"),
        ("activating", "auto-restart", "crashed"),
        ("failed", "failed", "crashed"),
        ("activating", "start", "starting"),
        ("reloading", "running", "starting"),
        ("deactivating", "stop-sigterm", "stopping"),
        ("inactive", "dead", "inactive"),
        ("", "", "unknown"),
    ],
)
def test_dyno_state_labels(active: str, sub: str, label: str) -> None:
    assert dyno_of(DynoState(WEB_2, active, sub, 0, 0, None, None)).state == label


def test_a_dyno_as_ps_json_shows_it() -> None:
    state = DynoState(WEB_2, "active", "running", 42, 2, 1767323045, 52_000_000)
    assert dyno_of(state).to_dict() == {
        "name": "web.2", "type": "web", "state": "up", "host": "i-0abc", "release": "v3",
        "since": "2026-01-02T03:04:05+00:00", "restarts": 2, "memory_mb": 49.6,
        "size": "standard-1x", "port": 20001,
    }  # fmt: skip


def test_app_rows_name_an_error_only_when_there_is_one() -> None:
    assert AppRow("shop", "v3").to_dict() == {"name": "shop", "release": "v3"}
    assert AppRow("bad", None, "broken").to_dict() == {
        "name": "bad", "release": None, "error": "broken"
    }  # fmt: skip


def test_app_info_as_apps_info_json_shows_it() -> None:
    info = AppInfo("shop", "0a1b2c3d4e5f", None, 3, "debian-13", [], "2026-01-02",
                   {"worker": ProcessFormation(0), "web": ProcessFormation(2, "standard-2x")})  # fmt: skip
    assert list(info.to_dict().items()) == [
        ("name", "shop"), ("id", "0a1b2c3d4e5f"), ("web_url", None), ("release", 3),
        ("stack", "debian-13"), ("buildpacks", []), ("buildpacks_resolved", []),
        ("created_at", "2026-01-02"),
        ("formation", {"web": {"quantity": 2, "size": "standard-2x"},
                       "worker": {"quantity": 0, "size": "standard-1x"}}),
    ]  # fmt: skip
